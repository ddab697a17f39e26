"""Samples and features of every backend are bit-for-bit those pinned in tests/fixtures/pinned_batches.json.

The entries (checksums of sampled node lists, edges and feature rows; see tests/pinned_batches.py)
were produced by the code before a refactor; every test recomputes its backend's entries with the
code as it is now and compares. Nothing is written here: regenerate deliberately with
``python -m tests.pinned_batches --write`` (and say why in the commit).

The Neo4j paths that walk relationships follow the store's relationship order, which differs
between two loads of the same graph; they are compared only while ``pytest_<name>`` is the load
they were pinned on (same order digest), and skipped, saying so, otherwise.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from src.data.graph import GraphDataset
from src.data.sources import load_dataset
from tests.pinned_batches import (DATASETS, NEO4J_FORMATS, PINNED_JSON, RELATIONSHIP_ORDER_MODES, ladybug_build,
                                  ladybug_open, params, partition_build, pin_ladybug, pin_memory, pin_neo4j,
                                  pin_neo4j_samplers, pin_partitioned, relationship_order_digest,
                                  relationship_order_keys)

BACKENDS = ("memory", "neo4j", "ladybug", "partitioned")


@pytest.fixture(scope="module")
def pinned() -> dict[str, Any]:
    if not PINNED_JSON.is_file():
        pytest.fail(f"{PINNED_JSON} is missing: generate it with the code to pin, `python -m tests.pinned_batches --write`")
    return json.loads(PINNED_JSON.read_text())


@pytest.fixture(scope="module")
def datasets() -> dict[str, GraphDataset]:
    return {name: load_dataset(name) for name in DATASETS}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pinned")


def differences(got: Any, want: Any, where: str = "") -> list[str]:
    """Where ``got`` and ``want`` differ (dict keys, list positions), as paths; empty when equal."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}/{k}: missing" for k in want if k not in got]
        out += [f"{where}/{k}: not pinned" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(got[k], want[k], f"{where}/{k}")
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{where}[{i}]")]
    return [] if got == want else [f"{where}: {got!r} != pinned {want!r}"]


def assert_pinned(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    diff = differences(got, want)
    assert not diff, f"{what}: {len(diff)} differences from {PINNED_JSON.name}:\n" + "\n".join(diff[:40])


def test_pinned_file_matches_the_pinning_parameters(pinned: dict[str, Any]) -> None:
    """Same fanouts, batch sizes, seeds... as when pinned, and every backend of every dataset present."""
    assert pinned["params"] == params()
    for name in DATASETS:
        assert set(BACKENDS) <= set(pinned[name]), name


@pytest.mark.parametrize("name", DATASETS)
def test_pinned_features_agree_across_backends(pinned: dict[str, Any], name: str) -> None:
    """The pinned file itself is sound: every backend's fetch of the fixed ids gave the source's rows."""
    source = [(r["x"], r["y"]) for r in pinned[name]["memory"]["features"]]
    for backend in ("neo4j", "ladybug", "partitioned"):
        for key, records in pinned[name][backend].items():
            if len(key.split("/")) >= 2 and key.split("/")[-2] == "features":  # not features_sparse, cache, ...
                assert [(r["x"], r["y"]) for r in records] == source, f"{backend} {key}"


@pytest.mark.parametrize("name", DATASETS)
def test_in_memory_pinned(pinned: dict[str, Any], datasets: dict[str, GraphDataset], name: str) -> None:
    assert_pinned(pin_memory(datasets[name]), pinned[name]["memory"], f"{name} in memory")


@pytest.mark.neo4j
@pytest.mark.parametrize("name", DATASETS)
def test_neo4j_pinned(client, loaded_dataset, pinned: dict[str, Any], name: str) -> None:
    """Adjacency samplers (store, projection), every feature path, the loader; not the relationship-order paths."""
    stores = {fmt: loaded_dataset(name, fmt)[1:] for fmt in NEO4J_FORMATS[name]}
    ds = loaded_dataset(name)[0]
    entries = pinned[name]["neo4j"]
    want = {k: v for k, v in entries.items() if k not in relationship_order_keys(entries)}
    assert_pinned(pin_neo4j(client, ds, stores, relationship_order=False), want, f"{name} neo4j")


@pytest.mark.neo4j
@pytest.mark.parametrize("name", DATASETS)
def test_neo4j_relationship_order_paths_pinned(client, loaded_dataset, pinned: dict[str, Any], name: str) -> None:
    """Cypher and the procedures walking relationships, on the load they were pinned on."""
    ds, schema, record = loaded_dataset(name)
    if relationship_order_digest(client, schema) != pinned[name]["neo4j_relationship_order"]:
        pytest.skip(f"{schema.dataset} was reloaded since pinning (another relationship order): its "
                    f"{', '.join(RELATIONSHIP_ORDER_MODES)} samples are not comparable; re-pin with the old code")
    entries = pinned[name]["neo4j"]
    want = {k: entries[k] for k in relationship_order_keys(entries)}
    assert want, "no relationship-order entries pinned"
    assert_pinned(pin_neo4j_samplers(client, ds, schema, record, RELATIONSHIP_ORDER_MODES), want,
                  f"{name} neo4j relationship order paths")


@pytest.mark.parametrize("name", DATASETS)
def test_ladybug_pinned(pinned: dict[str, Any], datasets: dict[str, GraphDataset], workdir: Path, name: str) -> None:
    ds = datasets[name]
    client, schema, record = ladybug_open(ladybug_build(ds, workdir / "ladybug"), name)
    try:
        assert_pinned(pin_ladybug(client, ds, schema, record), pinned[name]["ladybug"], f"{name} ladybug")
    finally:
        client.close()


@pytest.mark.parametrize("name", DATASETS)
def test_partitioned_pinned(pinned: dict[str, Any], datasets: dict[str, GraphDataset], workdir: Path,
                            name: str) -> None:
    ds = datasets[name]
    assert_pinned(pin_partitioned(partition_build(ds, workdir / "parts"), ds), pinned[name]["partitioned"],
                  f"{name} partitioned")
