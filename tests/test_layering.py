"""The layering the restructure promises: the neutral core and the Ladybug and in-memory wings never
reach the Neo4j driver, and no module grows past a size a reader takes in at once.

Two checks of the same rule: a static walk of ``src``'s import graph (every ``import``, module
level or inside a function, so a lazy import is caught too) that names the chain when a rule
breaks, and a fresh interpreter that imports every neutral module and looks at ``sys.modules``.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
# Packages that must work without the Neo4j driver installed.
NEUTRAL = ("src.core", "src.data", "src.train", "src.plots", "src.ladybugdb", "src.in_memory",
           "src.backends.base", "src.backends.database")
# The Neo4j wing: the driver, its client and everything built on it.
NEO4J = ("neo4j", "src.client", "src.graph_sampler", "src.feature_store", "src.graph_store", "src.neo4jdb")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports_of(name: str, top_level_only: bool = False) -> set[str]:
    """Modules ``name`` imports (``top_level_only``: at import time, not inside functions): ``src.*``
    resolved to a module of the tree, others by top-level package."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for target in targets:
            if target.startswith("src"):
                while target not in MODULES and "." in target:  # `from src.x import Name`: the module src.x
                    target = target.rsplit(".", 1)[0]
                if target in MODULES and target != name:
                    found.add(target)
            else:
                found.add(target.split(".")[0])
    return found


def chain_to(start: str, banned: tuple[str, ...], top_level_only: bool = False) -> list[str] | None:
    """The shortest import chain from ``start`` to a module in (or under) ``banned``, or None."""
    def is_banned(m: str) -> bool:
        return any(m == b or m.startswith(b + ".") for b in banned)

    paths = {start: [start]}
    queue = [start]
    while queue:
        current = queue.pop(0)
        for nxt in sorted(imports_of(current, top_level_only)) if current in MODULES else []:
            if nxt in paths:
                continue
            paths[nxt] = paths[current] + [nxt]
            if is_banned(nxt):
                return paths[nxt]
            queue.append(nxt)
    return None


def neutral_modules() -> list[str]:
    return [m for m in MODULES if any(m == p or m.startswith(p + ".") for p in NEUTRAL)]


@pytest.mark.parametrize("name", neutral_modules())
def test_neutral_module_never_imports_the_neo4j_wing(name: str) -> None:
    chain = chain_to(name, NEO4J)
    assert chain is None, " -> ".join(chain)


def test_the_walk_sees_a_real_chain() -> None:
    """The walk is not vacuous: the Neo4j backend does reach the driver, through its client."""
    chain = chain_to("src.neo4jdb.backend", ("neo4j",))
    assert chain is not None and chain[-1] == "neo4j"


def test_neutral_modules_load_without_the_driver_in_a_fresh_interpreter() -> None:
    code = ("import importlib, sys\n"
            f"for name in {neutral_modules()!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'neo4j' or m.startswith('neo4j.')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout


# Jobs that never run a model: importing torch would cost them seconds and ~750 MB of RSS (which
# partition_graph.py reports as the partitioning's peak).
TORCH_FREE = ("src.neo4jdb.load.ensure", "src.ladybugdb.loader", "src.in_memory.partition", "src.data.sources",
              "src.core.feature_stats", "src.core.csr")


def test_loaders_and_partitioner_do_not_import_torch() -> None:
    chains = {name: chain_to(name, ("torch", "torch_geometric"), top_level_only=True) for name in TORCH_FREE}
    assert all(c is None for c in chains.values()), {n: " -> ".join(c) for n, c in chains.items() if c}
    code = (f"import importlib, sys\nfor name in {TORCH_FREE!r}:\n    importlib.import_module(name)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_stays_readable_in_one_sitting(name: str) -> None:
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(REPO)} has {lines} lines (at most {MAX_LINES}): split it by job"
