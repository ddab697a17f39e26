"""The offline way into Neo4j: binary arrays, our bulk importer, the local server stopped and restarted.

Why it exists: for big graphs it is an order faster than UNWIND (break-even near 1M
relationships, src/data/loading.py IMPORT_MIN_EDGES). Only the project's local server, only into
an empty database: flat binary arrays (:func:`write_import_arrays`) are read by our bulk
importer (jobs/neo4j/importer), which drives Neo4j's own parallel batch importer, the engine of
``neo4j-admin database import``, without CSV text: features and the ``nbrs`` adjacency go in as
the nodes' byte arrays, node ids are Neo4j's node ids (no id mapping). The server is stopped
for it and restarted (bench/loader.py measures it).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.client import Neo4jClient
from src.core.codecs import DENSE, ColumnAffine, encode_rows
from src.core.errors import UserError
from src.core.schema import GraphSchema
from src.data.graph import GraphDataset
from src.data.loading import FeatureLayout, LoadConfig, LoadReport, feature_rows
from src.neo4jdb.class_archive import ClassArchive
from src.neo4jdb.load.records import create_bookkeeping_constraints, create_record
from src.neo4jdb.local import LocalNeo4j
from src.neo4jdb.processes import die_with_parent

log = logging.getLogger(__name__)

IMPORT_HEAP_MIB = 1024  # the bulk importer's heap besides the in-adjacency it sorts there (its caches are off-heap)
IMPORT_DATABASE = "gnn-import"  # the side database the bulk importer writes while the server stops
IMPORTER_CLASS = "local.gnn.importer.BinaryImport"  # jobs/neo4j/importer
PENDING_FILE = "pending-import.json"  # beside the server's home while an offline import runs


def import_blockers(client: Neo4jClient, ds: GraphDataset, server: LocalNeo4j) -> list[str]:
    """Why the offline import cannot be used with this client/server/dataset ([] if it can)."""
    blockers = []
    if not is_local_server(client, server):
        blockers.append(f"{client.settings.uri} is not the project's local server (jobs/neo4j.sh), "
                        "the only one the loader may stop and restart")
    if client.database != "neo4j":
        blockers.append(f"it imports into the default database 'neo4j', not {client.database!r}")
    nodes = int(client.read("MATCH (n) RETURN count(n) AS c")[0]["c"])
    if nodes:
        blockers.append(f"database {client.database!r} is not empty ({nodes} nodes)")
    busy = client.read("SHOW TRANSACTIONS YIELD currentQuery WHERE NOT currentQuery STARTS WITH 'SHOW TRANSACTIONS' "
                       "RETURN count(*) AS c")[0]["c"]
    if busy:
        blockers.append(f"other clients are running {busy} transaction(s) on it and would lose the server")
    if server.importer_jar() is None:
        blockers.append("the bulk importer needs Maven and a JDK (`apt-get install -y maven openjdk-17-jdk-headless`)")
    return blockers


def is_local_server(client: Neo4jClient, server: LocalNeo4j) -> bool:
    """True when ``client`` talks to ``server`` (the only one the loader may stop and restart)."""
    st = server.state()
    return st is not None and _points_at(client.settings.uri, int(st["port"]))


def _points_at(uri: str, port: int) -> bool:
    m = re.fullmatch(r"(?:bolt|neo4j)://(127\.0\.0\.1|localhost)(?::(\d+))?/?", uri)
    return bool(m) and int(m.group(2) or 7687) == port


# --------------------------------------------------------------------------------------------
# the whole offline load
# --------------------------------------------------------------------------------------------
def load_offline(client: Neo4jClient, ds: GraphDataset, schema: GraphSchema, fingerprint: str,
                 config: LoadConfig, layout: FeatureLayout, server: LocalNeo4j) -> LoadReport:
    """Binary arrays, bulk import (nodes with features and adjacency, relationships), restart and
    record (the id constraint is built during the verification: :func:`~src.neo4jdb.load.ensure.ensure_loaded`).

    Overlapped, because the server restart and the import are the bulk of the time: the server
    shuts down while the importer's JVM starts (it waits for the arrays) and while the arrays are
    written; the importer writes a side database (:data:`IMPORT_DATABASE`), so it need not wait
    for the server to be gone, and that store replaces the (empty) target once both are done.
    Restartable: the caller holds the server's lifecycle lock, and ``pending-import.json``
    (:func:`recover_import`) records how far it got, so a re-run after a kill cleans up (killed
    while importing: the side store and work folder go, the database was empty) or finishes
    (killed after the store was replaced: the record is written and the verification runs).
    Killed by SIGKILL while the server is down, it leaves the server stopped: ``jobs/neo4j.sh
    start`` starts it; the importer JVM dies with this process.
    """
    report = LoadReport(schema.dataset, schema.label, schema.rel_type, "loaded", "import",
                        ds.num_nodes, ds.num_edges, ds.num_nodes, ds.num_edges)
    t0 = time.perf_counter()
    _remove_workdirs(server)  # left by a killed import (the lock says none runs)
    workdir = Path(tempfile.mkdtemp(prefix="import-", dir=server.root))
    st = server.state()
    assert st is not None  # checked by import_blockers
    marker = _Pending(server, {"dataset": schema.dataset, "fingerprint": fingerprint, "pid": os.getpid()})
    marker.write("importing")
    log.warning("stopping the local Neo4j server (pid %s, %s) for the offline import; should this process be "
                "killed before it is back, `bash jobs/neo4j.sh start` starts it and a re-run of the loader "
                "finishes or restarts the import", st["pid"], server.home)
    try:
        try:
            with ThreadPoolExecutor(1) as pool:
                stopped = pool.submit(server.stop)
                try:
                    _drop_store(server, IMPORT_DATABASE)  # left over by a killed load
                    t = time.perf_counter()
                    with BulkImporter.start(server, schema, ds, workdir, config, IMPORT_DATABASE) as importer:
                        write_import_arrays(ds, workdir, encoding=layout.encoding, quant=layout.quant,
                                            progress=config.progress)
                        report.phases["arrays"] = time.perf_counter() - t
                        t = time.perf_counter()
                        report.tool_stages = importer.run()
                    report.phases["import"] = time.perf_counter() - t
                finally:
                    t = time.perf_counter()
                    stopped.result()
                    report.phases["stop wait"] = time.perf_counter() - t
            marker.write("replacing")
            _replace_store(server, IMPORT_DATABASE, client.database)
            marker.write("replaced")
        except BaseException:
            _drop_store(server, IMPORT_DATABASE)
            _drop_store(server, client.database)  # the database was empty before: this loses nothing
            marker.remove()
            raise
        finally:
            t = time.perf_counter()
            server.start(heap=st["heap"], pagecache=st["pagecache"], port=int(st["port"]))
            report.phases["restart"] = time.perf_counter() - t
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    create_bookkeeping_constraints(client)
    create_record(client, ds, schema, fingerprint, config, layout, "import")  # the id constraint: ensure_loaded
    marker.remove()
    report.phases["nodes"] = report.phases["relationships"] = time.perf_counter() - t0
    return report


class _Pending:
    """``pending-import.json`` beside the server's home: the offline import in progress and its phase."""

    def __init__(self, server: LocalNeo4j, info: dict) -> None:
        self.path, self.info = server.root / PENDING_FILE, info

    def write(self, phase: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({**self.info, "phase": phase}))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def pending_import(server: LocalNeo4j) -> dict | None:
    """The record of an offline import that did not finish (its loader was killed), or None."""
    try:
        return json.loads((server.root / PENDING_FILE).read_text())
    except (OSError, ValueError):
        return None


def recover_import(client: Neo4jClient, server: LocalNeo4j, ds: GraphDataset, schema: GraphSchema,
                   fingerprint: str, config: LoadConfig) -> None:
    """Clean up or finish the offline import a killed loader left (the caller holds the lifecycle lock).

    Killed before the imported store replaced the (empty) database: its side store and work folder
    are deleted and the next import starts afresh. Killed after: the graph is in the database, so
    its record is written (method import, incomplete) and :func:`ensure_loaded` verifies it.
    """
    pending = pending_import(server)
    if pending is None:
        return
    _remove_workdirs(server)
    if pending.get("phase") == "replacing":  # killed between the two renames: finish them
        if server.state() is None:
            for src, dst in zip(_store_dirs(server, IMPORT_DATABASE), _store_dirs(server, client.database)):
                if src.exists():
                    shutil.rmtree(dst, ignore_errors=True)
                    src.rename(dst)
            pending["phase"] = "replaced"
        else:  # the server started on half a store: it was empty before, so start afresh
            raise UserError(f"an offline import into {server.home} was killed while replacing the store; run "
                            "`bash jobs/neo4j.sh reset && bash jobs/neo4j.sh start` and load again")
    if pending.get("phase") != "replaced":
        log.warning("cleaning up an offline import of %r killed while importing (the database was empty)",
                    pending.get("dataset"))
        _drop_store(server, IMPORT_DATABASE)
    elif pending.get("dataset") == schema.dataset and pending.get("fingerprint") == fingerprint:
        log.warning("finishing the offline import of %r killed after its store was in place", schema.dataset)
        create_bookkeeping_constraints(client)
        create_record(client, ds, schema, fingerprint, config, FeatureLayout.choose(ds, config.feature_format,
                                                                                 config.force_encoding),
                      "import")
    else:
        raise UserError(f"an offline import of {pending.get('dataset')!r} was killed after writing its graph; "
                        f"re-run the loader for that dataset to finish it, or reset the database before loading "
                        f"{schema.dataset!r}")
    (server.root / PENDING_FILE).unlink(missing_ok=True)


def _remove_workdirs(server: LocalNeo4j) -> None:
    for folder in server.root.glob("import-*"):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _store_dirs(server: LocalNeo4j, database: str) -> list[Path]:
    """A database's store and transaction log folders."""
    return [server.home / "data" / sub / database for sub in ("databases", "transactions")]


def _drop_store(server: LocalNeo4j, database: str) -> None:
    """Delete ``database``'s store and transaction logs (the importer writes a new database)."""
    for folder in _store_dirs(server, database):
        shutil.rmtree(folder, ignore_errors=True)


def _replace_store(server: LocalNeo4j, source: str, target: str) -> None:
    """Make the imported database ``source`` the server's ``target`` (stopped server; nothing in a store names it)."""
    _drop_store(server, target)
    for src, dst in zip(_store_dirs(server, source), _store_dirs(server, target)):
        src.rename(dst)


# --------------------------------------------------------------------------------------------
# the importer process
# --------------------------------------------------------------------------------------------
@dataclass
class BulkImporter:
    """The binary importer (jobs/neo4j/importer) as a process that starts before its input exists.

    :meth:`start` launches the JVM, which sets up the import and then waits; :meth:`run` tells
    it the arrays are complete and returns seconds per stage from its own report. Used as a
    context manager, it is aborted on the way out unless it finished (:meth:`abort`).
    """

    proc: subprocess.Popen
    log_path: Path
    archive: ClassArchive  # its classes, mapped from the second import on (src/neo4jdb/class_archive.py)

    @classmethod
    def start(cls, server: LocalNeo4j, schema: GraphSchema, ds: GraphDataset, workdir: Path, config: LoadConfig,
              database: str) -> "BulkImporter":
        jar = server.importer_jar()
        assert jar is not None  # checked by import_blockers
        s = schema
        classpath = [f"{server.lib}/*", str(jar)]
        archive = server.class_archive("importer", classpath)
        heap_mib = IMPORT_HEAP_MIB + (8 * (ds.num_edges + ds.num_nodes + 1) >> 20)  # + the in-adjacency it builds
        cmd = [
            "java", f"-Xmx{heap_mib}m", *archive.flags(), "-cp", ":".join(classpath), IMPORTER_CLASS,
            f"--home={server.home}", f"--database={database}", f"--dir={workdir}",
            f"--nodes={ds.num_nodes}", f"--relationships={ds.num_edges}",
            f"--threads={config.workers}", f"--max-off-heap-memory={config.import_memory}",
            f"--dense-node-threshold={config.dense_node_threshold}", "--wait-for-input=true", "--verbose=true",
            f"--label={s.label}", f"--rel-type={s.rel_type}", f"--id={s.id_prop}", f"--x={s.x_prop}",
            f"--y={s.y_prop}", f"--split={s.split_prop}", f"--nbrs={s.adj_prop}",
        ]
        log.info("bulk import (%d threads, %s off-heap) into %s", config.workers, config.import_memory,
                 server.home / "data")
        log_path = workdir / "import.log"
        with open(log_path, "w") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True,
                                    preexec_fn=die_with_parent)  # no orphaned importer if this process is killed
        return cls(proc, log_path, archive)

    def run(self) -> dict[str, float]:
        """Let the import begin, wait for it, and return seconds per stage (UserError if it failed)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it exited already; its log says why
        code = self.proc.wait()
        self.archive.commit(code == 0)
        text = self.log_path.read_text(errors="replace")
        stages = _importer_stages(text)
        for name, seconds in stages.items():
            log.info("importer: %s %.1f s", name, seconds)
        if code != 0:
            lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
            # the importer's own one-line message, else the first exception of a stack trace, else the tail
            reason = next((ln for ln in lines if ln.startswith("error: ")), None) or next(
                (ln for ln in lines if "Exception" in ln), " | ".join(lines[-6:]))
            raise UserError(f"bulk import failed (exit {code}): {reason}")
        return stages

    def abort(self) -> None:
        """Stop the process if it still runs (the arrays failed); it exits without them on closed input."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.archive.commit(False)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def __enter__(self) -> "BulkImporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()  # a no-op once it has finished


def _importer_stages(text: str) -> dict[str, float]:
    """Seconds per stage of the importer's progress output (verbose: "<stage>, started ..." then
    "Done in ..." per stage; otherwise "<stage> COMPLETED in ...")."""
    stages: dict[str, float] = {}
    current = None
    for line in re.split(r"[\r\n]+", text):
        started = re.match(r"(\S.*), started \d{4}-", line)
        if started:
            current = started.group(1).lower()
        done = re.search(r"(?:^|\])Done in (.+)", line)
        if done and current:
            stages[current] = stages.get(current, 0.0) + _duration(done.group(1))
            current = None
        completed = re.match(r"(\S.*) COMPLETED in (.+)", line)
        if completed:
            stages[completed.group(1).lower()] = _duration(completed.group(2))
    return stages


def _duration(text: str) -> float:
    """Seconds of a Neo4j duration such as ``1m 3s 628ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(v) * units[u] for v, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)\b", text))


# --------------------------------------------------------------------------------------------
# the importer's input
# --------------------------------------------------------------------------------------------
def write_import_arrays(ds: GraphDataset, out_dir: Path, *, encoding: str = DENSE,
                        quant: ColumnAffine | None = None, progress: bool = True,
                        node_chunk: int = 1 << 16, edge_chunk: int = 1 << 22) -> None:
    """The flat little-endian arrays the binary importer reads (layout: jobs/neo4j/importer, BinaryInput).

    Raw bytes, no text: feature rows exactly as the ``bytes`` property stores them (``encoding``),
    labels, split codes and the relationship end points. Written chunk by chunk, one buffer write
    per chunk. The ``nbrs`` property is not among them: the importer sorts the end points by
    destination itself (a counting sort, O(E)), which took the loader's sort (O(E log E), ~3 s
    CPU for 25M relationships) off the path to the import's start.
    """
    n = ds.num_nodes
    with tqdm(total=n + ds.num_edges, unit="row", unit_scale=True, desc="import arrays",
              disable=not progress) as bar:
        with open(out_dir / "x.bin", "wb") as xf:
            offsets = [np.zeros(1, dtype="<i8")]
            for lo, hi in ds.iter_node_chunks(node_chunk):
                raw, lengths = encode_rows(feature_rows(ds, np.arange(lo, hi)), encoding, quant)
                xf.write(raw)
                offsets.append(offsets[-1][-1] + np.cumsum(lengths, dtype="<i8"))
                bar.update(hi - lo)
        np.concatenate(offsets).astype("<i8").tofile(out_dir / "x.ptr")
        np.asarray(ds.y).astype("<i8").tofile(out_dir / "y.i64")
        ds.split_codes().astype(np.int8).tofile(out_dir / "split.i8")
        with open(out_dir / "src.i64", "wb") as sf, open(out_dir / "dst.i64", "wb") as df:
            for lo, hi in ds.iter_edge_chunks(edge_chunk):
                e = np.asarray(ds.edge_index[:, lo:hi], dtype="<i8")  # no copy when the cache is int64 already
                sf.write(np.ascontiguousarray(e[0]).data)
                df.write(np.ascontiguousarray(e[1]).data)
                bar.update(hi - lo)
