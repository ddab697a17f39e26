"""``python src/partition_graph.py`` (as the seed's README wrote it) runs ``partition_graph.py`` at the repository root."""
import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    _script = Path(__file__).resolve().parent.parent / "partition_graph.py"
    sys.path[0] = str(_script.parent)  # `import src` from the checkout, as for the root script
    sys.argv[0] = str(_script)
    runpy.run_path(str(_script), run_name="__main__")
