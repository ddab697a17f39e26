"""``--normalize_features``: every backend hands the model the same normalised rows as the references.

References are computed on the whole source matrix, as a user would: PyG's own
``T.NormalizeFeatures()`` for row_l1, ``torch.nn.functional.normalize`` for row_l2, and a numpy
standardisation (population std, 1 where 0) for standard. Graphs: cora and coauthor_phy (stored
sparse) and amazon_cs (dense). Backends: in-memory full graph, partitioned (two partitions,
in-process, both ranks), Neo4j (procedures and Cypher), Ladybug (cora and amazon_cs: it stores
rows dense, and coauthor_phy's would be 1.1 GB).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch_geometric.data import Data

from src.client import Neo4jClient
from src.core.errors import UsageError, UserError
from src.core.normalize import MODES, FeatureNormalizer
from src.core.feature_stats import FeatureStats
from src.core.record import DatasetRecord
from src.data.loading import LoadConfig
from src.in_memory.full_graph import FullGraphBackend
from src.in_memory.partition import PartitionConfig, partition_dataset
from src.in_memory.partition_format import load_partition
from src.in_memory.partitioned import PartitionedBackend
from src.ladybugdb.backend import LadybugBackend
from src.ladybugdb.client import LadybugClient
from src.ladybugdb.loader import ensure_loaded as ladybug_ensure_loaded
from src.ladybugdb.loader import require_loaded as ladybug_require_loaded
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.backend import Neo4jBackend
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import require_loaded
from tests.pinned_batches import LoopbackService

pytestmark = pytest.mark.neo4j
KW = {"fanouts": [3, 2], "batch_size": 256, "num_loader_threads": 1}
SEEDS = 512  # first train/any nodes whose batches are compared
LADYBUG_GRAPHS = ("cora", "amazon_cs")


def reference(x: np.ndarray, mode: str) -> np.ndarray:
    """The normalised full matrix, computed the way a PyG user would."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if mode == "row_l1":
        return T.NormalizeFeatures()(Data(x=t)).x.numpy()
    if mode == "row_l2":
        return F.normalize(t, p=2.0, dim=-1).numpy()
    x64 = x.astype(np.float64)
    std = x64.std(axis=0)
    return ((x64 - x64.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


@pytest.fixture(scope="module")
def dense_rows(loaded_dataset) -> dict[str, np.ndarray]:
    """Each graph's full dense feature matrix (coauthor_phy: 1.2 GB, built once)."""
    out = {}
    for name in ("cora", "coauthor_phy", "amazon_cs"):
        ds = loaded_dataset(name)[0]
        out[name] = ds.features(np.arange(ds.num_nodes))
    return out


def batches_x(backend, seeds: torch.Tensor, n: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(n_id, dense x)`` of the first ``n`` batches of ``seeds``."""
    out = []
    for batch in backend.make_loader(seeds, shuffle=False, seed=0):
        x = batch.x.to_dense() if batch.x.is_sparse else batch.x
        out.append((batch.n_id.numpy(), x.numpy()))
        if len(out) == n:
            break
    return out


def check_backend(backend, want_full: dict[str, np.ndarray], mode: str, expect_sparse: bool | None = None) -> None:
    assert backend.normalize_features(mode) == mode
    seeds = torch.arange(min(SEEDS, backend.num_nodes))
    for n_id, x in batches_x(backend, seeds):
        np.testing.assert_allclose(x, want_full[mode][n_id], rtol=2e-6, atol=2e-7)
    if expect_sparse is not None:
        batch = next(iter(backend.make_loader(seeds[:64], shuffle=False, seed=0)))
        assert batch.x.is_sparse == expect_sparse  # rows stored sparse stay sparse where the mode allows


@pytest.fixture(scope="module")
def references(dense_rows) -> dict[str, dict[str, np.ndarray]]:
    return {name: {mode: reference(x, mode) for mode in MODES if mode != "none"} for name, x in dense_rows.items()}


@pytest.mark.parametrize("name", ["cora", "coauthor_phy", "amazon_cs"])
@pytest.mark.parametrize("mode", ["row_l1", "row_l2", "standard"])
def test_in_memory_and_neo4j_rows_equal_the_references(client: Neo4jClient, loaded_dataset, references,
                                                       name: str, mode: str) -> None:
    ds, schema, record = loaded_dataset(name)
    sparse = record.feature_encoding != "float32-le"
    keeps_sparse = sparse and mode != "standard"
    check_backend(FullGraphBackend(ds, **KW), references[name], mode, keeps_sparse)
    for access in (Neo4jAccess(use_procedures=True, adj_prop="nbrs"), Neo4jAccess.cypher()):
        backend = Neo4jBackend(client, record, access=access, **KW)  # not closed: the client is the session's
        check_backend(backend, references[name], mode, keeps_sparse if access.use_procedures else None)


def test_stored_statistics_equal_those_of_the_rows_held_in_memory(loaded_dataset) -> None:
    """The loader's statistics (from the source) and the in-memory backend's (from its rows) are the same numbers."""
    for name in ("cora", "coauthor_phy", "amazon_cs"):
        ds, _, record = loaded_dataset(name)
        stored = FeatureStats.from_bytes(record.feature_stats)
        held = FullGraphBackend(ds, **KW).feature_stats()
        assert stored.minimum == held.minimum and stored.raw_counts == held.raw_counts
        assert np.array_equal(stored.mean, held.mean) and np.array_equal(stored.std, held.std)


@pytest.fixture(scope="module")
def ladybug_files(tmp_path_factory, loaded_dataset) -> dict[str, Path]:
    """cora and amazon_cs, each in its own Ladybug file (Ladybug stores rows dense: coauthor_phy's would be
    1.1 GB, beyond the buffer pool a test should take)."""
    out = {}
    for name in LADYBUG_GRAPHS:
        out[name] = tmp_path_factory.mktemp("ladybug") / f"{name}.lbdb"
        with LadybugClient(out[name], read_only=False) as writer:
            ladybug_ensure_loaded(writer, loaded_dataset(name)[0], None, LoadConfig(progress=False))
    return out


@pytest.mark.parametrize("name", ["cora", "coauthor_phy", "amazon_cs"])
@pytest.mark.parametrize("mode", ["row_l1", "standard"])
def test_partitioned_and_ladybug_rows_equal_the_references(tmp_path: Path, ladybug_files, references,
                                                           name: str, mode: str) -> None:
    root = partition_dataset(PartitionConfig(dataset=name, num_partitions=2, output_dir=str(tmp_path))).root
    parts = [load_partition(root, r) for r in range(2)]
    splits = {s: torch.from_numpy(np.sort(np.concatenate([p.splits[s] for p in parts]))) for s in ("train", "val", "test")}
    for rank in range(2):  # rows owned here and rows from the peer
        check_backend(PartitionedBackend(parts[rank], LoopbackService(parts), splits, world_size=2, **KW),
                      references[name], mode)
    if name not in LADYBUG_GRAPHS:
        return
    with LadybugClient(ladybug_files[name]) as reader:
        check_backend(LadybugBackend(reader, ladybug_require_loaded(reader, name), **KW), references[name], mode)


def test_auto_picks_the_recommendation_and_says_so(loaded_dataset, caplog) -> None:
    coauthor = FullGraphBackend(loaded_dataset("coauthor_phy")[0], **KW)
    with caplog.at_level("INFO"):
        assert coauthor.normalize_features("auto") == "row_l1"  # raw counts 1..105
    assert sum("--normalize_features auto: row_l1 for coauthor_phy" in r.getMessage() for r in caplog.records) == 1
    assert FullGraphBackend(loaded_dataset("cora")[0], **KW).normalize_features("auto") == "none"  # 0/1 words
    tolokers = FullGraphBackend(loaded_dataset("tolokers")[0], **KW)
    assert tolokers.normalize_features("auto") == "none"  # continuous profile features
    assert tolokers.normalize_features("none") == "none"


def test_dataset_without_stored_statistics_one_line_error_then_reload_adds_them(client: Neo4jClient, loaded_dataset
                                                                                ) -> None:
    """A record written before the statistics existed: standard and row_l1 say how to add them, row_l2 and
    none need none; re-running the loader adds them without reloading anything else."""
    ds, schema, _ = loaded_dataset("cora", "dense")
    client.write("MATCH (d:GnnDataset {name: $name}) REMOVE d.feature_stats", name=schema.dataset)
    record = require_loaded(client, schema.dataset)
    assert record.feature_stats is None
    backend = Neo4jBackend(client, record, **KW)
    for mode in ("standard", "row_l1", "auto"):
        if mode == "auto":
            assert backend.normalize_features(mode) == "none"  # nothing to recommend from: says so, trains as is
            continue
        with pytest.raises(UserError) as info:
            backend.normalize_features(mode)
        message = str(info.value)
        assert "\n" not in message and "statistics" in message and "loaders/load_into_neo4j.py" in message
    assert backend.normalize_features("row_l2") == "row_l2"
    report = ensure_loaded(client, ds, schema, LoadConfig(progress=False))
    assert report.status == "feature statistics added"
    assert not FeatureStats.from_bytes(require_loaded(client, schema.dataset).feature_stats).raw_counts  # 0/1


def test_unknown_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown feature normalisation 'zscore'"):
        FeatureNormalizer("zscore", None)


def test_statistics_round_trip_and_refuse_garbage() -> None:
    stats = FeatureStats.compute(np.array([[1.0, 2.0], [3.0, 2.0]], dtype=np.float32))
    again = FeatureStats.from_bytes(stats.to_bytes())
    assert (again.minimum, again.raw_counts) == (1.0, True)
    assert np.array_equal(again.mean, [2.0, 2.0]) and np.array_equal(again.std, [1.0, 0.0])
    with pytest.raises(UserError, match="unreadable"):
        FeatureStats.from_bytes(b"GFS1" + bytes(40))
    record = DatasetRecord.from_properties({"name": "a", "label": "a", "rel_type": "a_EDGE"})
    assert record.feature_stats is None
