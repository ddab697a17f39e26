"""Distributed GNN training on a graph database (Neo4j) with PyG: the library behind the entry scripts.

Rooms (docs/ARCHITECTURE.md has the map): ``core`` (the neutral contracts and kernels: sampling,
codecs, the feature path, PyG adapters; no database driver), ``data`` (dataset sources),
``train`` (the one training loop), ``backends`` (the Backend base and the registry), and a wing
per engine: ``neo4jdb`` (+ the seed's ``client``, ``graph_sampler``, ``feature_store``,
``graph_store`` at this level), ``ladybugdb``, ``in_memory``; ``plots`` reads logs into figures.
"""
import sys
import warnings
from pathlib import Path


def _check_checkout() -> None:
    """A script of one checkout must not run another checkout's library: ``src`` is an editable
    install (jobs/install.sh), so a second clone's bench/ or loaders/ script would import the
    first clone's code without a word."""
    script = sys.argv[0] if sys.argv else ""
    if not script.endswith(".py"):
        return
    here = Path(__file__).resolve().parent.parent
    for folder in Path(script).resolve().parents:
        if (folder / "src" / "__init__.py").is_file():
            if folder != here:
                sys.exit(f"error: {script} belongs to the checkout {folder} but imports src from {here}; "
                         f"run `bash jobs/install.sh` in {folder}")
            return


_check_checkout()

# Before anything imports torch: it reads the variable once (src/core/huge_pages.py says why).
from src.core.huge_pages import enable_huge_pages  # noqa: E402

enable_huge_pages()

from src.core.malloc_threshold import fix_mmap_threshold  # noqa: E402

fix_mmap_threshold()

# PyG 2.8 calls torch.jit.script at import time, which torch 2.15 deprecates with a FutureWarning
# on every run; it is not ours to fix and would sit above every one-line error message.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
