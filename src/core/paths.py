"""Where the project's own files live: the checkout, and ``data/`` under it for everything generated."""
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_DIR / "data"  # datasets cache, partitions, the local Neo4j, Ladybug files (not in git)
