"""Pinned samples and features of every backend: a regression guard for refactors of src/.

Each ``pin_*`` function takes a backend's objects and returns a JSON-able dict of checksums
(sha256 of the raw bytes) of what the CURRENT code produces for fixed inputs:

* sampler entries: the first :data:`NUM_BATCHES` batches of :data:`BATCH_SIZE` seeds taken in
  order from the dataset's ``train_idx`` (cora has 140 train nodes: batches of 64, 64, 12),
  fanouts :data:`FANOUTS`, sampler seed :data:`SAMPLER_SEED`, epoch :data:`EPOCH`: ``out.node``,
  ``row``, ``col`` (int64), ``num_sampled_nodes``/``num_sampled_edges``, and the features of
  ``out.node`` (float32, dense) and labels (int64) from that backend's feature path;
* hop entries: one direct ``sampler.hop`` of the first batch's seeds (``rng`` seeded
  :data:`SAMPLER_SEED`), i.e. the per-hop path (gnn.sampleHop for the Neo4j procedures);
* feature entries: ``fetch`` of fixed id lists (:func:`feature_id_batches`: random, no repeats,
  then one with repeats), dense x/y, and for ``fetch_sparse`` the CSR arrays too;
* loader entries: the backend's ``make_loader(train ids, shuffle=False, seed=SAMPLER_SEED)``,
  first :data:`LOADER_BATCHES` batches: ``n_id``, ``x`` (densified), ``y``, ``edge_index``.

Different paths may legitimately sample differently (different RNG schemes): each path is
pinned against itself. The Neo4j paths that walk relationships (Cypher, procedures without the
adjacency property) see neighbours in the store's relationship order, which differs between two
loads of the same graph (parallel writers); their entries carry the digest of that order
(:func:`relationship_order_digest`) and only compare on the same load.

Regenerate (with the code to pin, against the running local Neo4j)::

    python -m tests.pinned_batches --write      # writes tests/fixtures/pinned_batches.json

tests/test_pinned_batches.py recomputes every entry and compares; it never writes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.sampler import NodeSamplerInput

from src.ladybugdb.backend import LadybugBackend, LadybugFeatureStore
from src.in_memory.full_graph import FullGraphBackend
from src.neo4jdb.backend import Neo4jBackend
from src.in_memory.partition_format import LocalPartition, load_partition
from src.in_memory.partitioned import PartitionedBackend
from src.in_memory.router import PartitionedSampler, PartitionRouter
from src.client import Neo4jClient, Neo4jSettings, connect
from src.core.csr import CSRGraph
from src.core.sampling import CSRNeighborSampler
from src.core.sampling import HopSampler
from src.data.graph import GraphDataset
from src.data.sources import load_dataset
from src.core.row_fetch import DatabaseFeatureStore
from src.feature_store import Neo4jFeatureStore
from src.neo4jdb.access import Neo4jAccess
from src.core.record import DatasetRecord
from src.graph_sampler import Neo4jNeighborSampler
from src.ladybugdb.client import LadybugClient
from src.ladybugdb.loader import ensure_loaded as ladybug_ensure_loaded
from src.ladybugdb.loader import require_loaded as ladybug_require_loaded
from src.ladybugdb.sampler import LadybugNeighborSampler
from src.data.loading import LoadConfig
from src.neo4jdb.load.ensure import ensure_loaded as neo4j_ensure_loaded
from src.neo4jdb.load.records import require_loaded as neo4j_require_loaded
from src.in_memory.partition import PartitionConfig, partition_dataset
from src.neo4jdb.procedures import DEFAULT_PROJECTION_MB
from src.in_memory.rpc_service import RowBlock
from src.core.codecs import SPARSE
from src.core.schema import GraphSchema

REPO = Path(__file__).resolve().parent.parent
PINNED_JSON = REPO / "tests" / "fixtures" / "pinned_batches.json"

DATASETS = ("cora", "amazon_cs")
FANOUTS = [5, 3]
BATCH_SIZE = 64
NUM_BATCHES = 3
SAMPLER_SEED = 7
EPOCH = 0
LOADER_BATCHES = 2
LOADER_THREADS = 2  # the loader entries go through PrefetchLoader's threads (per-batch RNG: deterministic)
FEATURE_ID_SEED = 7
FEATURE_BATCH = 1024  # ids per feature fetch
PROJECTION_MB = DEFAULT_PROJECTION_MB  # fits both graphs' topology and rows
NUM_PARTITIONS = 2

# Neo4j sampler paths: Cypher (one query per hop), the procedures walking relationships, the
# procedures reading the packed adjacency property from the store and from the in-heap projection.
NEO4J_SAMPLER_MODES: dict[str, dict[str, Any]] = {
    "cypher": {"use_procedures": False},
    "procedure_relationships": {"use_procedures": True, "use_adjacency": False},
    "procedure_adjacency": {"use_procedures": True, "use_adjacency": True, "projection_mb": 0.0},
    "procedure_adjacency_projection": {"use_procedures": True, "use_adjacency": True, "projection_mb": PROJECTION_MB},
}
# The modes whose samples follow the store's relationship order (see the module docstring).
RELATIONSHIP_ORDER_MODES = ("cypher", "procedure_relationships")
# Neo4j feature paths (``cache_mb``; ``warm``: a degree warm-up of a cache of a quarter of the nodes).
NEO4J_FEATURE_MODES: dict[str, dict[str, Any]] = {
    "cypher": {"use_procedures": False},
    "procedure": {"use_procedures": True},
    "procedure_projection": {"use_procedures": True, "projection_mb": PROJECTION_MB},
    "procedure_cache": {"use_procedures": True, "cache_mb": 64.0},
    "procedure_cache_warm": {"use_procedures": True, "warm": True},
    "cypher_cache": {"use_procedures": False, "cache_mb": 64.0},
}
# fetch_sparse paths (sparse-stored datasets only).
NEO4J_SPARSE_MODES: dict[str, dict[str, Any]] = {
    "cypher": {"use_procedures": False},
    "procedure": {"use_procedures": True},
    "procedure_projection": {"use_procedures": True, "projection_mb": PROJECTION_MB},
}
# The Neo4j stores pinned per dataset: feature_format -> loaded under pytest_<name>[_<format>].
NEO4J_FORMATS = {"cora": ("auto", "dense"), "amazon_cs": ("auto",)}


# ------------------------------------------------------------------------------ checksums
def sha(a: Any) -> str:
    """sha256 of the array's raw bytes (C order, its own dtype: a dtype change is a change)."""
    if isinstance(a, torch.Tensor):
        a = a.numpy()
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def dense(x: Any) -> np.ndarray:
    """Feature rows as a dense array: scipy sparse and torch sparse are densified."""
    if isinstance(x, torch.Tensor):
        x = x.to_dense() if x.is_sparse else x
        return x.numpy()
    if sp.issparse(x):
        return x.toarray()
    return np.asarray(x)


def feature_record(x: Any, y: Any) -> dict[str, Any]:
    xd, yd = dense(x), (y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y))
    return {"x": sha(xd), "x_dtype": str(xd.dtype), "x_shape": list(xd.shape), "x_sparse": bool(
        sp.issparse(x) or (isinstance(x, torch.Tensor) and x.is_sparse)),
        "y": sha(yd), "y_dtype": str(yd.dtype)}


def csr_record(x: sp.csr_matrix) -> dict[str, Any]:
    return {"indptr": sha(x.indptr), "indptr_dtype": str(x.indptr.dtype), "indices": sha(x.indices),
            "indices_dtype": str(x.indices.dtype), "data": sha(x.data), "data_dtype": str(x.data.dtype)}


def sample_record(out: Any) -> dict[str, Any]:
    return {"node": sha(out.node), "row": sha(out.row), "col": sha(out.col),
            "dtypes": [str(out.node.dtype), str(out.row.dtype), str(out.col.dtype)],
            "num_nodes": int(out.node.numel()),
            "num_sampled_nodes": [int(k) for k in out.num_sampled_nodes],
            "num_sampled_edges": [int(k) for k in out.num_sampled_edges]}


# ------------------------------------------------------------------------------ inputs
def seed_batches(ds: GraphDataset) -> list[np.ndarray]:
    """The first NUM_BATCHES * BATCH_SIZE train ids in order, in batches of BATCH_SIZE (the last may be short)."""
    seeds = np.asarray(ds.train_idx, dtype=np.int64)[:NUM_BATCHES * BATCH_SIZE]
    return [seeds[i:i + BATCH_SIZE] for i in range(0, len(seeds), BATCH_SIZE)]


def feature_id_batches(ds: GraphDataset) -> list[np.ndarray]:
    """Fixed id lists for feature fetches, independent of any sampler: NUM_BATCHES random lists
    without repeats (random order), then one with repeats (part of the first, reversed, plus 50 repeated)."""
    rng = np.random.default_rng(FEATURE_ID_SEED)
    batches = [rng.choice(ds.num_nodes, size=min(FEATURE_BATCH, ds.num_nodes), replace=False).astype(np.int64)
               for _ in range(NUM_BATCHES)]
    first = batches[0]
    batches.append(np.concatenate([first[:300][::-1], first[:50], first[100:150]]))
    return batches


def _sample(sampler: HopSampler, seeds: np.ndarray) -> Any:
    return sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.from_numpy(seeds)))


# ------------------------------------------------------------------------------ shared drivers
def pin_sampler(sampler: HopSampler, ds: GraphDataset, fetch: Callable[[np.ndarray], tuple[Any, Any]],
                epoch: int = EPOCH) -> list[dict[str, Any]]:
    """Per seed batch: the sample's checksums and the features/labels of ``out.node`` via ``fetch``."""
    sampler.set_epoch(epoch)
    records = []
    for seeds in seed_batches(ds):
        out = _sample(sampler, seeds)
        x, y = fetch(out.node.numpy())
        records.append({**sample_record(out), "features": feature_record(x, y)})
    return records


def pin_hop(sampler: HopSampler, ds: GraphDataset, fanout: int = FANOUTS[0]) -> dict[str, Any]:
    """One direct ``hop`` of the first seed batch."""
    counts, neighbours = sampler.hop(seed_batches(ds)[0], fanout, np.random.default_rng(SAMPLER_SEED))
    counts, neighbours = np.asarray(counts), np.asarray(neighbours)
    return {"counts": sha(counts), "neighbours": sha(neighbours), "dtypes": [str(counts.dtype), str(neighbours.dtype)],
            "num_neighbours": int(len(neighbours))}


def pin_fetch(fetch: Callable[[np.ndarray], tuple[Any, Any]], ds: GraphDataset, *, csr: bool = False
              ) -> list[dict[str, Any]]:
    """``fetch`` of every :func:`feature_id_batches` list, in order (caches fill as they go)."""
    records = []
    for ids in feature_id_batches(ds):
        x, y = fetch(ids)
        rec = feature_record(x, y)
        if csr:
            rec["csr"] = csr_record(x)
        records.append(rec)
    return records


def cache_record(fs: DatabaseFeatureStore) -> dict[str, Any]:
    cache = fs.cache
    return {"ids": sha(cache.ids), "len": len(cache), "capacity": int(cache.capacity), "hits": int(cache.hits),
            "lookups": int(cache.lookups)}


def pin_loader(backend: Any, seeds: torch.Tensor) -> list[dict[str, Any]]:
    """The first LOADER_BATCHES batches of ``backend.make_loader(seeds, shuffle=False, seed=SAMPLER_SEED)``."""
    records = []
    loader = iter(backend.make_loader(seeds, shuffle=False, seed=SAMPLER_SEED))
    try:
        for _ in range(LOADER_BATCHES):
            batch = next(loader)
            records.append({"n_id": sha(batch.n_id), "batch_size": int(batch.batch_size),
                            "num_nodes": int(batch.n_id.numel()), "edge_index": sha(batch.edge_index),
                            **feature_record(batch.x, batch.y)})
    finally:
        loader.close()  # joins the prefetch threads
    return records


# ------------------------------------------------------------------------------ in memory
def pin_memory(ds: GraphDataset) -> dict[str, Any]:
    """In-memory CSRNeighborSampler with the dataset's own rows, and FullGraphBackend's loader."""
    csr = CSRGraph.from_edge_index(np.asarray(ds.edge_index), ds.num_nodes)
    y = np.asarray(ds.y)

    def fetch(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ds.features(ids), y[ids]

    backend = FullGraphBackend(ds, fanouts=FANOUTS, batch_size=BATCH_SIZE, num_loader_threads=LOADER_THREADS)
    return {
        "sampler": pin_sampler(CSRNeighborSampler(csr, FANOUTS, seed=SAMPLER_SEED), ds, fetch),
        "sampler_epoch1": pin_sampler(CSRNeighborSampler(csr, FANOUTS, seed=SAMPLER_SEED), ds, fetch, epoch=1),
        "hop": pin_hop(CSRNeighborSampler(csr, FANOUTS, seed=SAMPLER_SEED), ds),
        "features": pin_fetch(fetch, ds),  # the source rows: every backend's feature entries must equal these
        "loader": pin_loader(backend, backend.split_nodes("train")),
    }


# ------------------------------------------------------------------------------ Neo4j
def neo4j_name(name: str, feature_format: str = "auto") -> str:
    """The dataset name tests load ``name`` under (tests/conftest.py, ``loaded_dataset``)."""
    return f"pytest_{name}" + ("" if feature_format == "auto" else f"_{feature_format}")


def neo4j_load(client: Neo4jClient, ds: GraphDataset, feature_format: str = "auto") -> tuple[GraphSchema, DatasetRecord]:
    """As conftest's ``loaded_dataset``: load once under :func:`neo4j_name` (a no-op when there), return (schema, record)."""
    schema = GraphSchema.for_dataset(neo4j_name(ds.name, feature_format))
    neo4j_ensure_loaded(client, ds, schema, LoadConfig(progress=False, feature_format=feature_format))
    return schema, neo4j_require_loaded(client, schema.dataset)


def relationship_order_digest(client: Neo4jClient, schema: GraphSchema) -> str:
    """sha256 of every node's in-neighbour ids in the store's relationship-iteration order (by node id)."""
    s = schema
    query = (f"MATCH (n:`{s.label}`) RETURN n.`{s.id_prop}` AS id, "
             f"[(n)<-[:`{s.rel_type}`]-(m) | m.`{s.id_prop}`] AS nbrs ORDER BY id")
    rows = client.read_tx(lambda tx: tx.run(query).values("id", "nbrs"))
    h = hashlib.sha256()
    for node, nbrs in rows:
        h.update(np.asarray([node, len(nbrs), *nbrs], dtype=np.int64).tobytes())
    return h.hexdigest()


def _access(mode: dict[str, Any]) -> Neo4jAccess:
    """The Neo4j read path a mode names (procedures or Cypher, adjacency property, projection budget)."""
    return Neo4jAccess(use_procedures=mode["use_procedures"], adj_prop="nbrs" if mode.get("use_adjacency") else None,
                       projection_mb=mode.get("projection_mb", 0.0))


def _neo4j_fs(client: Neo4jClient, schema: GraphSchema, record: DatasetRecord, mode: dict[str, Any]) -> Neo4jFeatureStore:
    kwargs = {k: v for k, v in mode.items() if k == "cache_mb"}
    if mode.get("warm"):
        per_row = record.num_features * 4 + 8 + 8 + 4  # FeatureCache's bytes per row
        kwargs["cache_mb"] = (record.num_nodes // 4) * per_row / 2**20
    fs = Neo4jFeatureStore.from_record(client, record, access=_access(mode), **kwargs)
    if mode.get("warm"):
        fs.warm_cache("degree")
    return fs


def pin_neo4j_samplers(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, record: DatasetRecord,
                       modes: Iterable[str]) -> dict[str, Any]:
    """Each sampler mode's batches (features of ``out.node`` from the default feature store) and direct hop."""
    fs = Neo4jFeatureStore.from_record(client, record)
    out: dict[str, Any] = {}
    for mode in modes:
        make = lambda: Neo4jNeighborSampler(client, schema, FANOUTS, seed=SAMPLER_SEED,
                                            access=_access(NEO4J_SAMPLER_MODES[mode]))
        out[f"sampler/{mode}"] = pin_sampler(make(), ds, fs.fetch)
        out[f"hop/{mode}"] = pin_hop(make(), ds)
    return out


def pin_neo4j_features(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, record: DatasetRecord) -> dict[str, Any]:
    """Every feature mode's ``fetch`` (cache state too), and ``fetch_sparse`` for sparse-stored rows
    (which get no cache: the cached modes run on dense-stored rows only)."""
    out: dict[str, Any] = {}
    sparse = record.feature_encoding == SPARSE
    for mode, kwargs in NEO4J_FEATURE_MODES.items():
        if sparse and (kwargs.get("cache_mb") or kwargs.get("warm")):
            continue  # sparse-stored rows get no cache (a warning says so): same as the plain modes
        fs = _neo4j_fs(client, schema, record, kwargs)
        out[f"features/{mode}"] = pin_fetch(fs.fetch, ds)
        if fs.cache is not None:
            out[f"cache/{mode}"] = cache_record(fs)
    if sparse:
        for mode, kwargs in NEO4J_SPARSE_MODES.items():
            fs = _neo4j_fs(client, schema, record, kwargs)
            out[f"features_sparse/{mode}"] = pin_fetch(fs.fetch_sparse, ds, csr=True)
    return out


def pin_neo4j_loader(client: Neo4jClient, schema: GraphSchema, record: DatasetRecord) -> dict[str, Any]:
    """Neo4jBackend with its defaults (procedures, adjacency when loaded, no projection, no cache).

    Not closed: ``close()`` would close ``client``, which the caller owns."""
    backend = Neo4jBackend(client, record, fanouts=FANOUTS, batch_size=BATCH_SIZE, num_loader_threads=LOADER_THREADS)
    return {"loader": pin_loader(backend, backend.split_nodes("train")),
            "loader_paths": {"procedures": backend.access.use_procedures, "adjacency": backend.access.use_adjacency}}


def pin_neo4j(client: Neo4jClient, ds: GraphDataset, stores: dict[str, tuple[GraphSchema, DatasetRecord]], *,
              relationship_order: bool = True) -> dict[str, Any]:
    """All Neo4j entries of ``ds``; ``stores`` maps feature_format (auto, dense) to (schema, record).

    Samplers and the loader run on the ``auto`` store; features on every store (``<format>/...``).
    ``relationship_order`` False leaves out the modes that follow the store's relationship order."""
    schema, record = stores["auto"]
    modes = [m for m in NEO4J_SAMPLER_MODES if relationship_order or m not in RELATIONSHIP_ORDER_MODES]
    out = {**pin_neo4j_samplers(client, ds, schema, record, modes), **pin_neo4j_loader(client, schema, record)}
    for fmt, (fmt_schema, fmt_record) in stores.items():
        out.update({f"{fmt}/{k}": v for k, v in pin_neo4j_features(client, ds, fmt_schema, fmt_record).items()})
    return out


def relationship_order_keys(entries: dict[str, Any]) -> list[str]:
    """The keys of :func:`pin_neo4j`'s output that depend on the store's relationship order."""
    return [k for k in entries if k.split("/", 1)[-1] in RELATIONSHIP_ORDER_MODES and k.split("/", 1)[0] in ("sampler", "hop")]


# ------------------------------------------------------------------------------ Ladybug
def ladybug_build(ds: GraphDataset, folder: Path) -> Path:
    """A Ladybug database of ``ds`` under ``folder`` (as tests/test_ladybug_backend.py builds it)."""
    path = Path(folder) / f"{ds.name}.lbdb"
    with LadybugClient(path, read_only=False) as writer:
        ladybug_ensure_loaded(writer, ds, None, LoadConfig(progress=False))
    return path


def ladybug_open(path: Path, name: str) -> tuple[LadybugClient, GraphSchema, DatasetRecord]:
    """(read-only client, schema, record), as a training rank opens them; the caller closes the client."""
    client = LadybugClient(path)
    record = ladybug_require_loaded(client, name)
    return client, record.schema, record


def pin_ladybug(client: LadybugClient, ds: GraphDataset, schema: GraphSchema, record: DatasetRecord) -> dict[str, Any]:
    """LadybugNeighborSampler (features from LadybugFeatureStore), the store with and without cache, the loader."""
    n, f = record.num_nodes, int(ds.num_features)
    fs = LadybugFeatureStore(client, schema, n, f)
    make = lambda: LadybugNeighborSampler(client, schema, n, FANOUTS, seed=SAMPLER_SEED)
    cached = LadybugFeatureStore(client, schema, n, f, cache_mb=64.0)
    per_row = f * 4 + 8 + 8 + 4
    warm = LadybugFeatureStore(client, schema, n, f, cache_mb=(n // 4) * per_row / 2**20)
    warm.warm_cache("degree")
    backend = LadybugBackend(client, record, fanouts=FANOUTS, batch_size=BATCH_SIZE,
                             num_loader_threads=LOADER_THREADS)  # not closed: it would close the client
    return {
        "sampler": pin_sampler(make(), ds, fs.fetch),
        "hop": pin_hop(make(), ds),
        "features/plain": pin_fetch(fs.fetch, ds),
        "features/cache": pin_fetch(cached.fetch, ds),
        "cache/cache": cache_record(cached),
        "features/cache_warm": pin_fetch(warm.fetch, ds),
        "cache/cache_warm": cache_record(warm),
        "loader": pin_loader(backend, backend.split_nodes("train")),
    }


# ------------------------------------------------------------------------------ partitioned
class LoopbackService:
    """Stands in for :class:`src.in_memory.rpc_service.PeerService` inside one process: a request to rank ``r``
    is answered by partition ``r`` exactly as rpc_service's handlers answer it (``sample`` -> the
    owner's ``LocalPartition.sample``; ``features`` -> ``RowBlock.gather`` of its rows, its labels),
    so the router, sampler, feature store and loader run unchanged without a process group."""

    def __init__(self, parts: list[LocalPartition]) -> None:
        self.parts = parts
        self.stats = None

    def submit(self, owner: int, kind: str, *args: Any) -> tuple[int, str, tuple]:
        return owner, kind, args

    def result(self, pending: tuple[int, str, tuple]) -> tuple[Any, ...]:
        owner, kind, args = pending
        part = self.parts[owner]
        if kind == "sample":
            frontier, fanout, seed = args
            counts, neighbours = part.sample(frontier.numpy(), fanout, seed)
            return torch.from_numpy(counts), torch.from_numpy(neighbours)
        if kind == "features":
            local = part.to_local(args[0].numpy())
            return RowBlock.gather(part.x, local), torch.from_numpy(part.y[local])
        raise ValueError(f"unknown request {kind!r}")

    def shutdown(self, graceful: bool = True) -> None:
        pass


def partition_build(ds: GraphDataset, folder: Path) -> Path:
    """METIS into NUM_PARTITIONS parts under ``folder`` (partition_graph.py's default method)."""
    return partition_dataset(PartitionConfig(dataset=ds.name, num_partitions=NUM_PARTITIONS,
                                             output_dir=str(folder))).root


def pin_partitioned(root: Path, ds: GraphDataset) -> dict[str, Any]:
    """PartitionedSampler + router features as seen from every rank, and rank 0's loader, over
    NUM_PARTITIONS in-process partitions (:class:`LoopbackService`)."""
    parts = [load_partition(root, r) for r in range(NUM_PARTITIONS)]
    service = LoopbackService(parts)
    out: dict[str, Any] = {"node_map": sha(parts[0].node_map), "node_map_dtype": str(parts[0].node_map.dtype)}
    for rank, part in enumerate(parts):
        router = PartitionRouter(part, service, NUM_PARTITIONS)
        out[f"sampler/rank{rank}"] = pin_sampler(PartitionedSampler(router, FANOUTS, seed=SAMPLER_SEED), ds,
                                                 router.features)
        out[f"hop/rank{rank}"] = pin_hop(PartitionedSampler(router, FANOUTS, seed=SAMPLER_SEED), ds)
        out[f"features/rank{rank}"] = pin_fetch(router.features, ds)
    splits = {split: torch.from_numpy(np.sort(np.concatenate([p.splits[split] for p in parts])))
              for split in ("train", "val", "test")}
    backend = PartitionedBackend(parts[0], service, splits, world_size=NUM_PARTITIONS, fanouts=FANOUTS,
                                 batch_size=BATCH_SIZE, num_loader_threads=LOADER_THREADS)
    out["loader/rank0"] = pin_loader(backend, backend.split_nodes("train"))
    return out


# ------------------------------------------------------------------------------ generator
def params() -> dict[str, Any]:
    return {"fanouts": FANOUTS, "batch_size": BATCH_SIZE, "num_batches": NUM_BATCHES, "sampler_seed": SAMPLER_SEED,
            "epoch": EPOCH, "loader_batches": LOADER_BATCHES, "feature_id_seed": FEATURE_ID_SEED,
            "feature_batch": FEATURE_BATCH, "projection_mb": PROJECTION_MB, "num_partitions": NUM_PARTITIONS}


def generate(client: Neo4jClient, workdir: Path) -> dict[str, Any]:
    """Every entry of every backend and dataset (Ladybug databases and partitions go to ``workdir``)."""
    result: dict[str, Any] = {"params": params()}
    for name in DATASETS:
        ds = load_dataset(name)
        stores = {fmt: neo4j_load(client, ds, fmt) for fmt in NEO4J_FORMATS[name]}
        lb_client, lb_schema, lb_record = ladybug_open(ladybug_build(ds, workdir / "ladybug"), name)
        try:
            ladybug = pin_ladybug(lb_client, ds, lb_schema, lb_record)
        finally:
            lb_client.close()
        result[name] = {
            "neo4j_relationship_order": relationship_order_digest(client, stores["auto"][0]),
            "memory": pin_memory(ds),
            "neo4j": pin_neo4j(client, ds, stores),
            "ladybug": ladybug,
            "partitioned": pin_partitioned(partition_build(ds, workdir / "parts"), ds),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {PINNED_JSON.relative_to(REPO)}")
    parser.add_argument("--out", type=Path, default=None, help="write here instead (e.g. to diff two runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("neo4j").setLevel(logging.ERROR)  # the server's "label does not exist" notices
    client = connect(Neo4jSettings.resolve())
    try:
        with tempfile.TemporaryDirectory(prefix="pinned_batches_") as tmp:
            result = generate(client, Path(tmp))
    finally:
        client.close()
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    target = args.out or (PINNED_JSON if args.write else None)
    if target is None:
        print(text)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
