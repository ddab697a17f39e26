"""``Neo4jBackend``: the trainer's backend whose graph, features and labels stay in Neo4j.

The trainer process holds only the current batches: seeds are fetched once per split (ids
only), neighbourhoods are sampled by :class:`Neo4jNeighborSampler` inside the database and
features come from :class:`Neo4jFeatureStore`, all behind an unchanged PyG ``NodeLoader`` and
the shared :class:`PrefetchLoader`.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.loader import NodeLoader

from src import procedures
from src.client import Neo4jClient
from src.errors import UserError
from src.feature_store import Neo4jFeatureStore
from src.graph_sampler import Neo4jNeighborSampler
from src.graph_store import Neo4jGraphStore
from src.neo4j_local import local_server_pid
from src.malloc_tuning import retain_freed_memory
from src.prefetch import PrefetchLoader
from src.schema import SPLITS, GraphSchema

log = logging.getLogger(__name__)


class Neo4jBackend:
    """Backend contract (docs/ARCHITECTURE.md) over one dataset loaded into Neo4j."""

    name = "neo4j"

    def __init__(self, client: Neo4jClient, schema: GraphSchema, record: dict[str, Any], *,
                 fanouts: Sequence[int], batch_size: int, num_loader_threads: int, cache_mb: float = 0.0,
                 use_procedures: bool | None = None, use_adjacency: bool | None = None) -> None:
        """``use_adjacency`` None: read the packed adjacency property when the procedures are there and
        the dataset record says it was written (``adjacency``); False walks the relationships."""
        retain_freed_memory()  # per-batch feature buffers are tens of MB: reuse, do not re-fault
        self.client = client
        self.schema = schema
        self.num_nodes = int(record["num_nodes"])
        self.num_features = int(record["num_features"])
        self.num_classes = int(record["num_classes"])
        self.fanouts = [int(k) for k in fanouts]
        self.batch_size = batch_size
        self.num_loader_threads = num_loader_threads
        self.use_procedures = procedures.has_procedures(client) if use_procedures is None else use_procedures
        has_adjacency = self.use_procedures and record.get("adjacency") == schema.adj_prop
        if use_adjacency and not has_adjacency:
            raise UserError(f"dataset {schema.dataset!r} has no adjacency property {schema.adj_prop!r} readable by the "
                            "gnn.* procedures; add it by re-running `python loaders/load_into_neo4j.py "
                            f"--dataset {schema.dataset}` on a server with the procedures")
        self.use_adjacency = has_adjacency if use_adjacency is None else bool(use_adjacency)
        if not self.use_adjacency and self.use_procedures:
            log.info("dataset %s: no adjacency property; the procedures walk the relationships "
                     "(re-run the loader to add it)", schema.dataset)
        self.feature_store = Neo4jFeatureStore(client, schema, self.num_nodes, self.num_features, cache_mb=cache_mb,
                                               use_procedures=self.use_procedures)
        self.graph_store = Neo4jGraphStore(client, schema, self.num_nodes)
        self.num_edges = self.graph_store.num_edges
        self._splits: dict[str, Tensor] = {}
        self._samplers: list[Neo4jNeighborSampler] = []
        self._server_pid = local_server_pid(client.settings.uri)

    def split_nodes(self, split: str) -> Tensor:
        """Ids of the nodes whose ``split`` property is ``split`` (sorted; fetched once)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split not in self._splits:
            s = self.schema
            query = f"MATCH (n:`{s.label}`) WHERE n.`{s.split_prop}` = $split RETURN n.`{s.id_prop}` AS id"
            ids = self.client.read_tx(lambda tx: tx.run(query, split=split).value("id"))
            if not ids and split == "train":
                raise UserError(f"dataset {s.dataset!r} has no training nodes in Neo4j (property "
                                f"{s.split_prop!r}); reload it with loaders/load_into_neo4j.py --reset")
            self._splits[split] = torch.from_numpy(np.sort(np.asarray(ids, dtype=np.int64)))
        return self._splits[split]

    def make_loader(self, seeds: Tensor, *, shuffle: bool, seed: int) -> PrefetchLoader:
        """Batches of ``seeds``; sampling and feature fetch of later batches run in threads."""
        sampler = Neo4jNeighborSampler(self.client, self.schema, self.fanouts, seed=seed,
                                       use_procedures=self.use_procedures, use_adjacency=self.use_adjacency)
        self._samplers.append(sampler)
        loader = NodeLoader(
            (self.feature_store, self.graph_store), node_sampler=sampler, input_nodes=seeds,
            batch_size=self.batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
        )
        return PrefetchLoader(loader, self.num_loader_threads)

    def server_pid(self) -> int | None:
        """Pid of the local Neo4j server (to log its RSS), None for a remote server."""
        return self._server_pid

    def stats(self) -> dict[str, Any]:
        cache = self.feature_store.cache
        return {
            "num_nodes": self.num_nodes,
            "num_edges": self.num_edges,
            "feature_rows_fetched": self.feature_store.stats.rows_fetched,
            "feature_round_trips": self.feature_store.stats.round_trips,
            "sampling_queries": sum(s.queries for s in self._samplers),
            "cache_hit_rate": cache.hit_rate if cache is not None else None,
            "procedures": self.use_procedures,
            "adjacency": self.use_adjacency,
        }

    def close(self) -> None:
        self.client.close()
