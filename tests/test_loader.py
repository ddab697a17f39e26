"""src/neo4jdb/load/ (+ src/data/loading.py, src/data/verification.py) + loaders/load_into_neo4j.py against the real server with the shared datasets.

Every test loads under its own ``T_<uuid>`` name/label and deletes exactly that afterwards, so
the suite can share the database with other engineers' data.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from src.client import Neo4jClient, Neo4jSettings, connect
from src.core.csr import CSRGraph
from src.data.graph import GraphDataset
from src.data.sources import load_dataset
from src.core.errors import UsageError, UserError
from src.data.loading import LoadConfig
from src.data.verification import verify_loaded
from src.neo4jdb.load.bulk_import import BulkImporter, write_import_arrays
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import BATCH_LABEL, dataset_record, delete_dataset, require_loaded
from src.core.ports import free_port
from src.neo4jdb.local import LocalNeo4j
from src.core.schema import DATASET_LABEL, GraphSchema
from src.core.codecs import DENSE, SPARSE, encode_adjacency, encode_features
from src.core.arrays import stable_argsort_ids

pytestmark = pytest.mark.neo4j

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "loaders" / "load_into_neo4j.py"
QUIET = LoadConfig(progress=False)


# --------------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------------
def new_schema() -> GraphSchema:
    return GraphSchema.for_dataset(f"T_{uuid.uuid4().hex[:12]}")


def drop(client: Neo4jClient, schema: GraphSchema) -> None:
    delete_dataset(client, schema.dataset, schema.label, schema.rel_type)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def markers(client: Neo4jClient, name: str, kind: str | None = None) -> int:
    return client.read(f"MATCH (b:`{BATCH_LABEL}` {{dataset: $name}}) WHERE $kind IS NULL OR b.kind = $kind "
                       "RETURN count(b) AS c", name=name, kind=kind)[0]["c"]


def subgraph(ds: GraphDataset, n: int) -> GraphDataset:
    """The first ``n`` nodes of a real graph and the edges among them (small and fast to load)."""
    e = ds.edge_index[:, (ds.edge_index[0] < n) & (ds.edge_index[1] < n)]
    return GraphDataset(name=f"{ds.name}_first{n}", num_nodes=n, num_features=ds.num_features,
                        num_classes=ds.num_classes, edge_index=e, x=ds.features(np.arange(n)), y=ds.y[:n].copy(),
                        train_idx=ds.train_idx[ds.train_idx < n], val_idx=ds.val_idx[ds.val_idx < n],
                        test_idx=ds.test_idx[ds.test_idx < n])


def assert_exact(client: Neo4jClient, ds: GraphDataset, s: GraphSchema) -> None:
    """Counts, the exact edge multiset (hence no duplicates), label and split histograms."""
    assert client.count_nodes(s.label) == ds.num_nodes
    assert client.count_relationships(s.rel_type) == ds.num_edges
    pairs = client.read(f"MATCH (a:`{s.label}`)-[:`{s.rel_type}`]->(b:`{s.label}`) RETURN a.id AS a, b.id AS b")
    got = np.array([[r["a"], r["b"]] for r in pairs], dtype=np.int64).reshape(-1, 2)
    want = np.asarray(ds.edge_index).T
    assert np.array_equal(got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])])
    hist = {r["y"]: r["c"] for r in client.read(f"MATCH (n:`{s.label}`) RETURN n.y AS y, count(*) AS c")}
    counts = np.bincount(ds.y + 1)  # shifted so that -1 (unlabelled) counts too
    assert hist == {k - 1: int(c) for k, c in enumerate(counts) if c}
    splits = {r["s"]: r["c"] for r in client.read(f"MATCH (n:`{s.label}`) RETURN n.split AS s, count(*) AS c")}
    sizes = {"train": len(ds.train_idx), "val": len(ds.val_idx), "test": len(ds.test_idx),
             None: ds.num_nodes - len(ds.train_idx) - len(ds.val_idx) - len(ds.test_idx)}
    assert splits == {k: v for k, v in sizes.items() if v}


@pytest.fixture(scope="module")
def cora() -> GraphDataset:
    return load_dataset("cora")


@pytest.fixture(scope="module")
def citeseer() -> GraphDataset:
    return load_dataset("citeseer")


@pytest.fixture(scope="module")
def loaded_cora(client: Neo4jClient, cora: GraphDataset) -> Iterator[tuple[GraphSchema, object]]:
    """Cora loaded once for the module, in several batches and two writer threads."""
    schema = new_schema()
    report = ensure_loaded(client, cora, schema, LoadConfig(batch_size=1000, workers=2, progress=False))
    yield schema, report
    drop(client, schema)


@pytest.fixture
def schemas(client: Neo4jClient) -> Iterator[Callable[[], GraphSchema]]:
    """Fresh schemas for one test; their data is deleted afterwards."""
    made: list[GraphSchema] = []

    def make() -> GraphSchema:
        made.append(new_schema())
        return made[-1]

    yield make
    for s in made:
        drop(client, s)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def test_cora_loads_exactly(client: Neo4jClient, cora: GraphDataset, loaded_cora) -> None:
    schema, report = loaded_cora
    assert (report.status, report.method) == ("loaded", "unwind")
    assert (report.nodes_written, report.relationships_written) == (cora.num_nodes, cora.num_edges)
    assert_exact(client, cora, schema)
    ids = np.random.default_rng(0).choice(cora.num_nodes, 64, replace=False)
    recs = client.read(f"UNWIND $ids AS i MATCH (n:`{schema.label}` {{id: i}}) RETURN n.id AS id, n.x AS x",
                       ids=ids.tolist())
    got = {r["id"]: bytes(r["x"]) for r in recs}
    assert require_loaded(client, schema.dataset).feature_encoding == SPARSE  # auto: 1.3% non-zero
    assert [got[i] for i in ids.tolist()] == encode_features(cora.features(ids), SPARSE)  # bit for bit


def test_record_and_readers(client: Neo4jClient, cora: GraphDataset, loaded_cora) -> None:
    schema, _ = loaded_cora
    record = require_loaded(client, schema.dataset)
    by_label = dataset_record(client, schema.label)
    assert record == by_label and record.properties == by_label.properties  # every stored property, too
    assert record.complete is True and record.properties["complete"] is True  # stored as a boolean
    assert record.fingerprint == cora.fingerprint()
    assert (record.label, record.rel_type, record.properties["source"]) == (schema.label, schema.rel_type, "cora")
    assert (record.num_nodes, record.num_edges, record.num_features, record.num_classes) == (
        cora.num_nodes, cora.num_edges, cora.num_features, cora.num_classes)
    constraints = client.read("SHOW CONSTRAINTS YIELD type, labelsOrTypes, properties "
                              "WHERE labelsOrTypes = [$l] RETURN type, properties", l=schema.label)
    assert [(r["type"], r["properties"]) for r in constraints] == [("UNIQUENESS", ["id"])]


def test_rerun_is_a_noop(client: Neo4jClient, cora: GraphDataset, loaded_cora) -> None:
    schema, _ = loaded_cora
    before = (client.count_nodes(schema.label), client.count_relationships(schema.rel_type),
              markers(client, schema.dataset))
    report = ensure_loaded(client, cora, schema, QUIET)
    assert (report.status, report.nodes_written, report.relationships_written) == ("already loaded", 0, 0)
    out = cli("--dataset", "cora", "--name", schema.dataset)
    assert out.returncode == 0, out.stderr
    assert "already loaded" in out.stdout and len(out.stdout.strip().splitlines()) == 1
    after = (client.count_nodes(schema.label), client.count_relationships(schema.rel_type),
             markers(client, schema.dataset))
    assert after == before


def test_killed_load_resumes_to_exact_counts(client: Neo4jClient, cora: GraphDataset, schemas) -> None:
    schema = schemas()
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--dataset", "cora", "--name", schema.dataset,
                             "--batch_size", "200"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while markers(client, schema.dataset, "relationships") < 3:  # killed in the middle of the edges
            assert proc.poll() is None and time.monotonic() < deadline, "the load ended before it could be killed"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    rels = client.count_relationships(schema.rel_type)
    assert client.count_nodes(schema.label) == cora.num_nodes and 0 < rels < cora.num_edges
    assert dataset_record(client, schema.dataset).complete is False
    with pytest.raises(UserError, match="only partly loaded"):
        require_loaded(client, schema.dataset)

    out = cli("--dataset", "cora", "--name", schema.dataset)
    assert out.returncode == 0, out.stderr
    assert "resumed" in out.stdout
    assert_exact(client, cora, schema)
    distinct = client.read(f"MATCH (a:`{schema.label}`)-[:`{schema.rel_type}`]->(b) "
                           "WITH DISTINCT a.id AS a, b.id AS b RETURN count(*) AS c")[0]["c"]
    assert distinct == client.count_relationships(schema.rel_type) == cora.num_edges
    assert markers(client, schema.dataset) == -(-cora.num_nodes // 200) + -(-cora.num_edges // 200)
    assert require_loaded(client, schema.dataset).complete is True


def test_two_datasets_coexist(client: Neo4jClient, cora: GraphDataset, citeseer: GraphDataset, loaded_cora,
                              schemas) -> None:
    cora_schema, _ = loaded_cora
    schema = schemas()
    report = ensure_loaded(client, citeseer, schema, QUIET)
    assert report.status == "loaded"
    assert_exact(client, citeseer, schema)
    assert client.count_nodes(cora_schema.label) == cora.num_nodes
    assert client.count_relationships(cora_schema.rel_type) == cora.num_edges
    assert dataset_record(client, schema.dataset).properties["source"] == "citeseer"
    assert dataset_record(client, cora_schema.dataset).properties["source"] == "cora"


def test_different_graph_is_refused(client: Neo4jClient, cora: GraphDataset, citeseer: GraphDataset,
                                    loaded_cora) -> None:
    schema, _ = loaded_cora
    with pytest.raises(UserError, match=r"different graph under the name .*--reset"):
        ensure_loaded(client, citeseer, schema, QUIET)
    other_name = GraphSchema(dataset=f"T_{uuid.uuid4().hex[:12]}", label=schema.label, rel_type="T_unused_EDGE")
    with pytest.raises(UserError, match=f"label {schema.label} in use"):
        ensure_loaded(client, citeseer, other_name, QUIET)
    assert dataset_record(client, other_name.dataset) is None
    out = cli("--dataset", "citeseer", "--name", schema.dataset)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: ") and "--reset" in out.stderr
    assert_exact(client, cora, schema)  # untouched


def test_reset_replaces_only_that_dataset(client: Neo4jClient, cora: GraphDataset, citeseer: GraphDataset,
                                          loaded_cora, schemas) -> None:
    schema = schemas()
    small_cora, small_citeseer = subgraph(cora, 300), subgraph(citeseer, 400)
    ensure_loaded(client, small_cora, schema, LoadConfig(batch_size=100, progress=False))
    report = ensure_loaded(client, small_citeseer, schema, LoadConfig(reset=True, progress=False))
    assert report.status == "loaded"
    assert_exact(client, small_citeseer, schema)
    assert markers(client, schema.dataset) == 2  # the new load's batches only
    assert dataset_record(client, schema.dataset).fingerprint == small_citeseer.fingerprint()
    assert client.count_nodes(loaded_cora[0].label) == cora.num_nodes  # other datasets untouched


def test_import_is_refused_on_a_non_empty_database(client: Neo4jClient, cora: GraphDataset, loaded_cora) -> None:
    schema = new_schema()
    with pytest.raises(UsageError, match="--method import is not possible here: .*not empty.*--method unwind"):
        ensure_loaded(client, cora, schema, LoadConfig(method="import", progress=False))
    assert dataset_record(client, schema.dataset) is None and client.count_nodes(schema.label) == 0


@pytest.mark.parametrize("encoding", [DENSE, SPARSE])
def test_import_arrays_are_the_stored_bytes(tmp_path: Path, cora: GraphDataset, encoding: str) -> None:
    ds = subgraph(cora, 120)
    ds.x[0, :3] = [-0.0, np.float32(1e-42), -np.inf]  # sign bit, subnormal, negative bytes
    ds.x[5] = 0  # an all-zero row
    write_import_arrays(ds, tmp_path, encoding=encoding, progress=False, node_chunk=50, edge_chunk=64)

    def rows(name: str) -> list[bytes]:
        raw, ptr = (tmp_path / f"{name}.bin").read_bytes(), np.fromfile(tmp_path / f"{name}.ptr", dtype="<i8")
        assert len(ptr) == ds.num_nodes + 1 and ptr[-1] == len(raw)
        return [raw[a:b] for a, b in zip(ptr[:-1], ptr[1:])]

    assert rows("x") == encode_features(ds.features(np.arange(ds.num_nodes)), encoding)
    e = np.asarray(ds.edge_index)
    assert not (tmp_path / "nbrs.bin").exists()  # the importer builds the adjacency (test_offline_import_into_own_server)
    assert np.fromfile(tmp_path / "y.i64", dtype="<i8").tolist() == ds.y.tolist()
    assert np.array_equal(np.fromfile(tmp_path / "split.i8", dtype=np.int8), ds.split_codes())
    assert np.array_equal(np.fromfile(tmp_path / "src.i64", dtype="<i8"), e[0])
    assert np.array_equal(np.fromfile(tmp_path / "dst.i64", dtype="<i8"), e[1])


@pytest.mark.parametrize("bound", [1, 7, 5000])
def test_stable_argsort_ids_is_numpys_stable_argsort(bound: int) -> None:
    ids = np.random.default_rng(bound).integers(0, bound, 20_000)  # many repeats: the order among them counts
    assert np.array_equal(stable_argsort_ids(ids, bound), np.argsort(ids, kind="stable"))
    assert stable_argsort_ids(ids[:0], bound).size == 0


def test_bulk_importer_names_a_bad_array(tmp_path: Path, cora: GraphDataset) -> None:
    ds = subgraph(cora, 50)
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    server = LocalNeo4j(root=tmp_path / "neo4j", lib=LocalNeo4j().lib)  # never started: nothing to stop

    def bad_src() -> None:
        src = np.fromfile(arrays / "src.i64", dtype="<i8")
        src[-1] = ds.num_nodes
        src.tofile(arrays / "src.i64")

    def short_dst() -> None:
        bad_src()
        with open(arrays / "dst.i64", "r+b") as fh:
            fh.truncate(8)

    for damage, message in (
        (bad_src, f"error: src.i64 holds node id {ds.num_nodes}, outside \\[0, {ds.num_nodes}\\)"),
        (short_dst, f"error: .*dst.i64 has 8 bytes, expected {8 * ds.num_edges}"),
    ):
        # as the offline load runs it: started first, then the arrays, then run
        with BulkImporter.start(server, GraphSchema.for_dataset("t"), ds, arrays, QUIET, "neo4j") as importer:
            write_import_arrays(ds, arrays, progress=False)
            damage()
            with pytest.raises(UserError, match=r"bulk import failed \(exit 2\): " + message):
                importer.run()
    assert not (server.home / "data" / "databases" / "neo4j" / "neostore").exists()


def test_bulk_importer_starts_before_its_arrays_exist(tmp_path: Path, cora: GraphDataset) -> None:
    ds = subgraph(cora, 80)
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    server = LocalNeo4j(root=tmp_path / "neo4j", lib=LocalNeo4j().lib)  # never started: the store is only written
    importer = BulkImporter.start(server, GraphSchema.for_dataset("t"), ds, arrays, QUIET, "side")
    time.sleep(1)  # it would fail now on the missing files if it did not wait
    assert importer.proc.poll() is None
    write_import_arrays(ds, arrays, progress=False)
    stages = importer.run()
    assert stages["relationships"] >= 0 and "nodes" in stages
    assert (server.home / "data" / "databases" / "side" / "neostore").exists()
    # the arrays never completed: it exits without writing a store, and says why
    aborted = BulkImporter.start(server, GraphSchema.for_dataset("t"), ds, arrays, QUIET, "other")
    assert aborted.proc.stdin is not None
    aborted.proc.stdin.close()
    assert aborted.proc.wait(timeout=120) == 2
    assert "the arrays were not completed" in aborted.log_path.read_text()
    assert not (server.home / "data" / "databases" / "other" / "neostore").exists()


def test_verification_finds_missing_and_wrong_adjacency(client: Neo4jClient, cora: GraphDataset,
                                                        schemas: Callable[[], GraphSchema]) -> None:
    ds, schema = subgraph(cora, 300), schemas()
    ensure_loaded(client, ds, schema, QUIET)
    verify_loaded(client, ds, schema, adjacency=True)
    hub = int(np.argmax(np.bincount(ds.edge_index[1], minlength=ds.num_nodes)))  # always among the sampled rows
    client.write(f"MATCH (n:`{schema.label}` {{id: $id}}) SET n.nbrs = $b", id=hub, b=bytes(8))
    with pytest.raises(UserError, match="'nbrs' of sampled nodes .*differs from the source; reload it with --reset"):
        verify_loaded(client, ds, schema, adjacency=True)
    client.write(f"MATCH (n:`{schema.label}`) WHERE n.id IN [3, 5] REMOVE n.nbrs")
    with pytest.raises(UserError, match="2 nodes have no 'nbrs'"):
        verify_loaded(client, ds, schema, adjacency=True)
    verify_loaded(client, ds, schema)  # without the adjacency check the rest still matches


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--node_label", "--rel_type"])
def test_injection_in_names_exits_2_before_any_query(flag: str) -> None:
    # the URI points at a closed port: any query attempt would fail with "cannot reach" (exit 1)
    out = cli("--dataset", "cora", flag, "x`) DETACH DELETE n //", env={"NEO4J_URI": f"bolt://127.0.0.1:{free_port()}"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and f"invalid {flag}" in out.stderr
    with pytest.raises(UsageError):
        GraphSchema.for_dataset("cora", label="a` DETACH DELETE")


def test_cli_errors_are_one_line(neo4j_settings: Neo4jSettings) -> None:
    unknown = cli("--dataset", "no_such_graph")
    assert unknown.returncode == 2 and "unknown dataset 'no_such_graph'" in unknown.stderr
    down = cli("--dataset", "cora", env={"NEO4J_URI": f"bolt://127.0.0.1:{free_port()}", "NEO4J_PASSWORD": "x"})
    assert down.returncode == 1 and "cannot reach" in down.stderr
    wrong = cli("--dataset", "cora", env={"NEO4J_URI": neo4j_settings.uri, "NEO4J_USER": neo4j_settings.user,
                                          "NEO4J_PASSWORD": "definitely-wrong"})
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr
    for out in (unknown, down, wrong):
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
    help_text = cli("--help").stdout
    for flag in ("--dataset", "--dataset_root_dir", "--name", "--reset", "--batch_size", "--workers", "--method",
                 "--node_label", "--rel_type", "--num_nodes", "--avg_degree", "--num_features", "--num_classes",
                 "--seed", "--neo4j_uri"):
        assert flag in help_text


def test_require_loaded_says_how_to_load(client: Neo4jClient) -> None:
    name = f"T_{uuid.uuid4().hex[:12]}"
    with pytest.raises(UserError, match=f"not loaded in Neo4j database .*python loaders/load_into_neo4j.py --dataset {name}`"):
        require_loaded(client, name)
    with pytest.raises(UserError, match="--dataset synthetic --num_nodes 1000 --avg_degree 10 --num_features 16"):
        require_loaded(client, "synthetic_n1000_d10_f16_c4_s0")


# --------------------------------------------------------------------------------------------
# offline import on a server of our own (never the shared one)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_offline_import_into_own_server(tmp_path: Path, cora: GraphDataset) -> None:
    server = LocalNeo4j(root=tmp_path / "neo4j", lib=LocalNeo4j().lib)
    server.start(heap="512m", pagecache="256m")
    try:
        info = server.connection_info()
        with connect(Neo4jSettings(uri=info["uri"], password=info["password"])) as own:
            schema = GraphSchema.for_dataset("cora")
            report = ensure_loaded(own, cora, schema, LoadConfig(method="auto", import_min_edges=0, progress=False),
                                   server=server)
            assert (report.status, report.method) == ("loaded", "import")
            assert_exact(own, cora, schema)
            x = {r["id"]: bytes(r["x"]) for r in own.read("MATCH (n:cora) RETURN n.id AS id, n.x AS x")}
            assert require_loaded(own, "cora").feature_encoding == SPARSE
            assert [x[i] for i in range(cora.num_nodes)] == encode_features(cora.x, SPARSE)
            nbrs = {r["id"]: bytes(r["nbrs"]) for r in own.read("MATCH (n:cora) RETURN n.id AS id, n.nbrs AS nbrs")}
            csr = CSRGraph.from_edge_index(cora.edge_index, cora.num_nodes)
            assert [nbrs[i] for i in range(cora.num_nodes)] == encode_adjacency(csr.indptr, csr.indices)
            assert report.tool_stages["relationships"] > 0  # the importer's own stage report was read
            # no relationship type lookup index (not built by the import), the node label one is there
            lookups = {r["e"] for r in own.read("SHOW INDEXES YIELD type, entityType AS e WHERE type = 'LOOKUP' "
                                                "RETURN e")}
            assert lookups == {"NODE"}
            assert "ERROR" not in (server.home / "logs" / "neo4j.log").read_text()  # the imported store started cleanly
            # what README tells users who want it back: built online, the counts unchanged
            own.write("CREATE LOOKUP INDEX rel_type_lookup_index IF NOT EXISTS FOR ()-[r]-() ON EACH type(r)")
            own.write("CALL db.awaitIndexes(300)")
            assert own.count_relationships(schema.rel_type) == cora.num_edges
            assert own.read(f"MATCH ()-[r:`{schema.rel_type}`]->() RETURN count(r.no_such) AS c, "
                            "count(*) AS n")[0]["n"] == cora.num_edges  # a scan of the relationships, not the counts store
            # the importer's JVM dumped its classes at exit; later imports map them
            assert list((server.lib.parent / "class-archives").glob("importer-*.jsa"))
            assert require_loaded(own, "cora").properties["method"] == "import"
            again = ensure_loaded(own, cora, schema, LoadConfig(progress=False), server=server)
            assert again.status == "already loaded"
            # killed after the import but before the verification: the re-run only verifies
            own.write(f"MATCH (d:`{DATASET_LABEL}` {{name: 'cora'}}) SET d.complete = false")
            resumed = ensure_loaded(own, cora, schema, LoadConfig(progress=False), server=server)
            assert (resumed.status, resumed.method) == ("resumed", "import")
            assert_exact(own, cora, schema)
            assert own.read(f"MATCH (d:`{DATASET_LABEL}`) RETURN count(d) AS c")[0]["c"] == 1
    finally:
        server.stop()
