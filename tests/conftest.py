"""Shared fixtures: a real Neo4j (the local one started by .ci/run / jobs/neo4j.sh, or NEO4J_URI)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from src.client import Neo4jClient, Neo4jSettings, connect
from src.core.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
# Scripts the tests start (loaders/, bench/) import this checkout's src whichever checkout the
# editable install (jobs/install.sh) points at.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def _missing_shared_dataset(exc: BaseException | None) -> str | None:
    """What of ../shared/datasets ``exc`` (or an exception it arose from) says is missing; None: something else."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, UserError) and str(exc).startswith("dataset ") and "../shared/datasets" in str(exc):
            return str(exc).split(" is ")[0] + " is missing"
        if isinstance(exc, FileNotFoundError) and str(exc.filename or "").startswith(str(SHARED_DATASETS)):
            return f"{exc.filename} is missing"
        exc = exc.__cause__ or exc.__context__
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a bare clone (no ../shared beside it, README's test command on a fresh machine) a test that needs one of
    the shared graphs is skipped, saying which, instead of failing; with ../shared present nothing changes."""
    outcome = yield
    report = outcome.get_result()
    if SHARED_DATASETS.is_dir() or call.excinfo is None or not report.failed:
        return
    missing = _missing_shared_dataset(call.excinfo.value)
    if missing is not None:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: needs ../shared/datasets ({missing})")


@pytest.fixture(scope="session")
def neo4j_settings() -> Neo4jSettings:
    """Settings of the running server; the tests fail (not skip) when none runs."""
    return Neo4jSettings.resolve()


@pytest.fixture(scope="session")
def client(neo4j_settings: Neo4jSettings) -> Neo4jClient:
    c = connect(neo4j_settings)
    yield c
    c.close()


@pytest.fixture
def unique_label() -> str:
    """A label no other test uses, so tests can share one database."""
    return f"T_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def loaded_dataset(client: Neo4jClient):
    """``loaded_dataset("cora") -> (GraphDataset, GraphSchema, record)`` loaded once under ``pytest_<name>``.

    The stable name makes re-runs against the same database a no-op load (verified by counts).
    ``feature_format`` other than auto (dense, sparse) loads under ``pytest_<name>_<format>``.
    """
    from src.data.sources import load_dataset
    from src.data.loading import LoadConfig
    from src.neo4jdb.load.ensure import ensure_loaded
    from src.neo4jdb.load.records import require_loaded
    from src.core.schema import GraphSchema

    cache: dict[str, tuple] = {}

    def load(name: str, feature_format: str = "auto"):
        key = f"pytest_{name}" + ("" if feature_format == "auto" else f"_{feature_format}")
        if key not in cache:
            ds = load_dataset(name)
            schema = GraphSchema.for_dataset(key)
            ensure_loaded(client, ds, schema, LoadConfig(progress=False, feature_format=feature_format))
            cache[key] = (ds, schema, require_loaded(client, schema.dataset))
        return cache[key]

    return load
