"""``Neo4jAccess``: how the trainer reads one dataset from Neo4j, decided once per backend.

Why one object: the sampler, the feature store and the cache warm-up must agree on the path
(the gnn.* procedures or plain Cypher, the packed adjacency property or the relationships, a
server-side projection or the store); passed as three loose arguments to four classes, each
resolved ``has_procedures`` itself and could disagree.

The adjacency property is a copy of the relationships: it is read only on a server whose plugin
keeps it current on every commit (:func:`src.neo4jdb.live_edits.watches_writes`), so no path ever
samples a deleted neighbour or misses a new one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from src.client import Neo4jClient
from src.core.errors import UserError
from src.core.record import DatasetRecord
from src.core.schema import GraphSchema
from src.neo4jdb import live_edits, procedures

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Neo4jAccess:
    """``use_procedures``: call gnn.* (else Cypher); ``adj_prop``: the packed adjacency property the
    procedures read (None: they walk the incoming relationships); ``projection_mb``: server heap
    budget of the dataset's in-heap projection (0: read the store every call)."""

    use_procedures: bool
    adj_prop: str | None = None
    projection_mb: float = 0.0

    def __post_init__(self) -> None:
        if self.adj_prop is not None and not self.use_procedures:
            raise ValueError("the adjacency property is read by the gnn.* procedures only")
        if self.projection_mb < 0:
            raise ValueError(f"projection_mb must be >= 0 (got {self.projection_mb})")
        if not self.use_procedures and self.projection_mb:
            object.__setattr__(self, "projection_mb", 0.0)  # projections live in the procedures

    @property
    def use_adjacency(self) -> bool:
        return self.adj_prop is not None

    @classmethod
    def cypher(cls) -> Neo4jAccess:
        """Plain Cypher: no plugin needed (``--cypher_only``), the reference path."""
        return cls(use_procedures=False)

    @classmethod
    def resolve(cls, client: Neo4jClient, schema: GraphSchema, record: DatasetRecord | None = None, *,
                use_procedures: bool | None = None, use_adjacency: bool | None = None,
                projection_mb: float = 0.0) -> Neo4jAccess:
        """The fastest path the server and the dataset allow, unless told otherwise.

        ``use_procedures`` None: the procedures when the server has them. ``use_adjacency`` None:
        the adjacency property when the procedures are used and ``record`` says it was written
        and verified; True without it is a :class:`UserError` naming the fix.
        """
        procs = procedures.has_procedures(client) if use_procedures is None else bool(use_procedures)
        if use_procedures is None and not procs:
            log.warning("the Neo4j server at %s has no gnn.* procedures: sampling and feature fetch use Cypher "
                        "(10-30x slower); build the plugin with `bash jobs/neo4j.sh plugin-jar`, copy the jar into "
                        "the server's plugins/ folder and restart it (README: 'Your own Neo4j server')",
                        client.settings.uri)
        has_adjacency = procs and record is not None and record.has_adjacency(schema)
        if has_adjacency and use_adjacency is not False and not live_edits.watches_writes(client, schema):
            # only a plugin that watches every write keeps the copy equal to the relationships
            log.warning("dataset %s: the server's gnn.* plugin does not keep the adjacency copy %r current "
                        "(too old, or not loaded at start), so it may miss edits; walking the relationships",
                        schema.dataset, schema.adj_prop)
            has_adjacency = False
        if use_adjacency and not has_adjacency:
            raise UserError(f"dataset {schema.dataset!r} has no adjacency property {schema.adj_prop!r} readable by the "
                            "gnn.* procedures; add it by re-running `python loaders/load_into_neo4j.py "
                            f"--dataset {schema.dataset}` on a server with the procedures")
        adjacency = has_adjacency if use_adjacency is None else bool(use_adjacency)
        if procs and not adjacency and record is not None and use_adjacency is None:
            log.info("dataset %s: no adjacency property; the procedures walk the relationships "
                     "(re-run the loader to add it)", schema.dataset)
        if procs and not adjacency and schema.direction != "in":
            # the procedures walk incoming relationships only; "out"/"undirected" graphs need the copy
            log.info("dataset %s (direction %s) has no usable adjacency property: sampling with Cypher",
                     schema.dataset, schema.direction)
            procs = False
        return cls(use_procedures=procs, adj_prop=schema.adj_prop if adjacency else None,
                   projection_mb=projection_mb if procs else 0.0)
