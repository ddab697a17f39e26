"""Load a :class:`~src.data.graph.GraphDataset` into Neo4j: the entry point and the choice of way in.

Why it exists: one call (:func:`ensure_loaded`) that makes a dataset present and complete,
whatever state a previous run left. Two ways in, chosen by :attr:`~src.data.loading.LoadConfig.method`:

* ``unwind`` (any server, online, resumable by batch markers): src/neo4jdb/load/unwind.py;
* ``import`` (only the project's local server, only into an empty database, the server
  stopped and restarted): src/neo4jdb/load/bulk_import.py.

Every load ends with a verification against the source (src/data/verification.py) before
``complete = true`` is set on the dataset's ``(:GnnDataset)`` record (src/neo4jdb/load/records.py);
a complete record with the same fingerprint makes a re-run a fast no-op, a record of a different
graph makes the loader refuse (unless ``reset``). Storage model: docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import logging
import time

from src.client import Neo4jClient
from src.core.errors import UsageError
from src.core.schema import DATASET_LABEL, GraphSchema
from src.data.graph import GraphDataset
from src.data.loading import FeatureLayout, LoadConfig, LoadReport, check_counts, check_stored_format
from src.data.verification import verify_loaded
from src.neo4jdb.load.bulk_import import (import_blockers, is_local_server, load_offline, pending_import,
                                             recover_import)
from src.neo4jdb.load.records import (
    BATCH_LABEL,
    claim,
    create_bookkeeping_constraints,
    create_id_constraint,
    create_record,
    mark_complete,
    write_feature_stats,
)
from src.neo4jdb.load.unwind import add_adjacency, load_unwind, write_adjacency
from src.neo4jdb.local import LocalNeo4j
from src.neo4jdb.processes import server_lock

log = logging.getLogger(__name__)


def ensure_loaded(
    client: Neo4jClient,
    dataset: GraphDataset,
    schema: GraphSchema | None = None,
    config: LoadConfig | None = None,
    *,
    server: LocalNeo4j | None = None,
    _locked: bool = False,
) -> LoadReport:
    """Make ``dataset`` present and complete in Neo4j under ``schema`` (default names from it).

    A no-op when it is already there; resumes an interrupted load; refuses (``UserError``) when
    the name, label or relationship type already holds a different graph, unless
    ``config.reset``. ``server`` is the local server the offline import may stop and restart
    (default: the project's ``LocalNeo4j()``, used only if ``client`` points at it). An offline
    import runs under the server's lifecycle lock and is decided again once it is held (another
    loader may have loaded the dataset meanwhile); an import a killed loader left is cleaned up
    or finished first (:func:`~src.neo4jdb.load.bulk_import.recover_import`).
    """
    t0 = time.perf_counter()
    config = config or LoadConfig()
    schema = schema or GraphSchema.for_dataset(dataset.name)
    if schema.label in (DATASET_LABEL, BATCH_LABEL):
        raise UsageError(f"label {schema.label!r} is reserved for the loader's bookkeeping; pick another --node_label")
    create_bookkeeping_constraints(client)
    fingerprint = dataset.fingerprint()
    srv = server or LocalNeo4j()
    if pending_import(srv) is not None and is_local_server(client, srv):
        with server_lock(srv.root):
            recover_import(client, srv, dataset, schema, fingerprint, config)
    record = claim(client, dataset, schema, fingerprint, config.reset)
    if record is not None:
        check_stored_format(record, config.feature_format, schema.dataset)
    if record is not None and record.get("complete"):
        check_counts(client, dataset, schema, "Neo4j")
        report = LoadReport(schema.dataset, schema.label, schema.rel_type, "already loaded", "none",
                            dataset.num_nodes, dataset.num_edges)
        if record.get("adjacency") != schema.adj_prop:  # loaded before the adjacency property existed
            t = time.perf_counter()
            add_adjacency(client, dataset, schema, config)
            report.status, report.phases["adjacency"] = "adjacency added", time.perf_counter() - t
        if not record.get("feature_stats"):  # loaded before --normalize_features existed
            t = time.perf_counter()
            write_feature_stats(client, schema, dataset)
            report.phases["feature statistics"] = time.perf_counter() - t
            if report.status == "already loaded":
                report.status = "feature statistics added"
        report.seconds = time.perf_counter() - t0
        return report
    if record is not None and record.get("method") == "import":
        # the bulk importer wrote the whole graph at once; only the index build or verification was interrupted
        report = LoadReport(schema.dataset, schema.label, schema.rel_type, "resumed", "import",
                            dataset.num_nodes, dataset.num_edges)
    elif not _locked and (config.method == "import" or _choose_method(client, dataset, config, srv) == "import"):
        with server_lock(srv.root):  # decided again under the lock: a concurrent loader may have loaded it
            return ensure_loaded(client, dataset, schema, config, server=srv, _locked=True)
    elif _choose_method(client, dataset, config, srv) == "import":  # a resumed load is not empty: unwind
        layout = FeatureLayout.choose(dataset, config.feature_format, config.force_encoding)
        report = load_offline(client, dataset, schema, fingerprint, config, layout, srv)
    else:
        if record is None:
            record = create_record(client, dataset, schema, fingerprint, config,
                                   FeatureLayout.choose(dataset, config.feature_format, config.force_encoding),
                                   "unwind")
        report = load_unwind(client, dataset, schema, record, config)
    if report.method != "import":  # the bulk importer wrote the adjacency with the nodes
        t = time.perf_counter()
        write_adjacency(client, dataset, schema, config)
        report.phases["adjacency"] = time.perf_counter() - t
    t = time.perf_counter()
    if report.method == "import":  # the id index is built while the verification scans the nodes
        verify_loaded(client, dataset, schema, adjacency=True, alongside=lambda: create_id_constraint(client, schema))
        report.phases["index + verify"] = time.perf_counter() - t
    else:
        verify_loaded(client, dataset, schema, adjacency=True)  # one node scan checks the adjacency too
        report.phases["verify"] = time.perf_counter() - t
    t = time.perf_counter()
    write_feature_stats(client, schema, dataset)
    report.phases["feature statistics"] = time.perf_counter() - t
    report.seconds = time.perf_counter() - t0
    mark_complete(client, schema, report)
    return report


def _choose_method(client: Neo4jClient, ds: GraphDataset, config: LoadConfig, server: LocalNeo4j | None) -> str:
    if config.method == "unwind":
        return "unwind"
    blockers = import_blockers(client, ds, server or LocalNeo4j())
    if config.method == "import":
        if blockers:
            raise UsageError(f"--method import is not possible here: {'; '.join(blockers)}. The offline import "
                             "writes a new database with the server stopped; use --method unwind (online)")
        return "import"
    if not blockers and ds.num_edges >= config.import_min_edges:
        log.info("auto: offline import (empty local database, %d relationships)", ds.num_edges)
        return "import"
    return "unwind"
