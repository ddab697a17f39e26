"""Bad input to every command-line tool: exit code, one ``error:`` line, no traceback, nothing written.

Each case runs an entry script's real ``__main__`` (``runpy``, so the scripts' own ``run_cli``
turns errors into the exit code and the line on stderr) in an empty folder, and checks:
exit code 2 for usage errors and 1 otherwise, exactly one ``error: `` line naming the problem,
no ``Traceback``, and no file or folder left behind (no half-written log dir, checkpoint or
partition folder).  In-process keeps ~50 cases fast (torch is imported once); a few cases per
script also run as real subprocesses, so the exit path itself is covered.  Values that reach
Cypher are checked separately: injection strings through every such flag leave the database
untouched.
"""
from __future__ import annotations

import os
import runpy
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from src.in_memory.full_graph import FullGraphBackend
from src.client import Neo4jClient, Neo4jSettings
from src.data import sources
from src.data.sources import load_dataset
from src.data.loading import LoadConfig
from src.neo4jdb.load.ensure import ensure_loaded
from src.in_memory.partition import PartitionConfig, partition_dataset
from src.core.schema import GraphSchema
from src.train.config import TrainConfig
from src.train.loop import train

REPO = Path(__file__).resolve().parent.parent
SHARED_CORA = sources.shipped_dir() / "cora.npz"  # the shared file, byte for byte; present in a bare clone
TRAIN = "in-memory-alternative.py"
NEO4J = "main-neo4j-backend.py"
LOADER = "loaders/load_into_neo4j.py"
PARTITION = "partition_graph.py"
VISUALIZE = "visualize.py"
SMALL = ["--fanouts", "2,2", "--num_layers", "2", "--hidden_channels", "16", "--batch_size", "64",
         "--epochs", "1", "--num_loader_threads", "0"]
INJECTIONS = ["x`) DETACH DELETE n //", "cora' OR 1=1 //", 'a"b', "with space", "`", "n}) MATCH (m) DELETE m //"]


@dataclass(frozen=True)
class Case:
    """``script argv`` must exit ``code`` with one ``error:`` line containing ``expect``.

    ``argv`` may use ``{name}`` placeholders filled from the fixtures' context (ports, files).
    ``may_leave``: top-level names the run may create (only a run that really started).
    ``quiet``: stderr is exactly the error line (False when progress logs come first: then every
    other line must be a log record or a progress bar, never a second message).
    """

    id: str
    script: str
    argv: list[str]
    code: int
    expect: str
    setup: str | None = None
    may_leave: set[str] = field(default_factory=set)
    quiet: bool = True


CASES = [
    # -- training flags (shared by both training scripts) -------------------------------------
    Case("batch-size-zero", TRAIN, ["--batch_size", "0"], 2, "--batch_size must be > 0"),
    Case("batch-size-negative", TRAIN, ["--batch_size", "-8"], 2, "--batch_size must be > 0"),
    Case("batch-size-not-int", TRAIN, ["--batch_size", "abc"], 2, "argument --batch_size: invalid int value: 'abc'"),
    Case("fanouts-empty", TRAIN, ["--fanouts", ""], 2, "--fanouts is empty"),
    Case("fanouts-not-int", TRAIN, ["--fanouts", "a,b", "--num_layers", "2"], 2, "--fanouts has a non-integer entry"),
    Case("fanouts-vs-layers", TRAIN, ["--fanouts", "10,5", "--num_layers", "3"], 2,
         "--fanouts has 2 entries but --num_layers is 3"),
    Case("epochs-zero", TRAIN, ["--epochs", "0"], 2, "--epochs must be > 0"),
    Case("dropout-one", TRAIN, ["--dropout", "1"], 2, "--dropout must be in [0, 1)"),
    Case("unknown-flag", TRAIN, ["--bogus", "1"], 2, "unrecognized arguments: --bogus 1"),
    Case("root-dir-missing", TRAIN, ["--full_graph", "--dataset_root_dir", "nowhere"], 2,
         "--dataset_root_dir nowhere is not an existing folder"),
    Case("root-dir-missing-neo4j", NEO4J, ["--dataset_root_dir", "nowhere"], 2,
         "--dataset_root_dir nowhere is not an existing folder"),
    Case("resume-and-overwrite", TRAIN, ["--run_name", "r", "--resume", "--overwrite"], 2, "pass one of them"),
    Case("rank-not-below-nodes", TRAIN, ["--num_nodes", "2", "--node_rank", "2"], 2, "--node_rank must be in 0..1"),
    Case("master-port-range", TRAIN, ["--master_port", "70000"], 2, "--master_port must be in 1..65535"),
    Case("resume-without-run-name", TRAIN, ["--resume"], 2, "--resume needs --run_name"),
    Case("run-name-with-slash", TRAIN, ["--run_name", "../x"], 2, "--run_name must be a plain name"),
    Case("run-name-300-chars", TRAIN, ["--run_name", "r" * 300], 2, "--run_name is 300 bytes long"),
    Case("log-dir-unwritable", TRAIN, ["--log_dir", "{file}/logs"], 2, "--log_dir '{file}/logs' is not writable",
        ),
    Case("checkpoint-dir-unwritable", TRAIN, ["--checkpoint_dir", "{file}/ckpt"], 2,
         "--checkpoint_dir '{file}/ckpt' is not writable"),
    Case("unknown-dataset", TRAIN, ["--full_graph", "--dataset", "no_such_graph"], 2, "unknown dataset 'no_such_graph'"),
    Case("corrupt-npz", TRAIN, ["--full_graph", "--dataset", "cora", "--dataset_root_dir", "data"], 1, "corrupt",
         setup="corrupt_npz"),
    Case("truncated-npz", TRAIN, ["--full_graph", "--dataset", "cora", "--dataset_root_dir", "data"], 1, "corrupt",
         setup="truncated_npz"),
    Case("master-port-in-use", TRAIN, ["--full_graph", *SMALL, "--num_nodes", "2", "--node_rank", "0",
                                       "--master_addr", "127.0.0.1", "--master_port", "{busy_port}"],
         1, "the port is in use"),
    Case("resume-other-model", TRAIN, ["--full_graph", *SMALL, "--hidden_channels", "32", "--run_name", "old",
                                       "--resume", "--checkpoint_dir", "ckpt"],
         1, "hidden_channels=16 but this run has hidden_channels=32", setup="checkpoint"),
    Case("resume-other-dataset", TRAIN, ["--full_graph", *SMALL, "--dataset", "citeseer", "--run_name", "old",
                                         "--resume", "--checkpoint_dir", "ckpt"],
         1, "was written for dataset=cora, num_features=1433, num_classes=7 but this run has dataset=citeseer",
         setup="checkpoint"),
    Case("resume-corrupt-checkpoint", TRAIN, ["--full_graph", *SMALL, "--run_name", "old", "--resume",
                                              "--checkpoint_dir", "ckpt"],
         1, "is unreadable", setup="corrupt_checkpoint"),
    Case("normalize-unknown-in-memory", TRAIN, ["--full_graph", *SMALL, "--normalize_features", "l1"], 2,
         "--normalize_features: invalid choice"),
    Case("partition-folder-incomplete", TRAIN, [*SMALL, "--dataset", "cora", "--partition_dir", "parts"],
         1, "is incomplete or corrupt", setup="broken_partition", quiet=False),
    Case("partition-folder-of-other-graph", TRAIN, [*SMALL, "--dataset", "cora", "--partition_dir", "parts"],
         2, "holds a different partitioning", setup="foreign_partition", quiet=False),
    # -- Neo4j backend ---------------------------------------------------------------------
    Case("dataset-not-loaded", NEO4J, ["--dataset", "never_loaded_graph"], 1,
         "dataset 'never_loaded_graph' is not loaded"),
    Case("wrong-password", NEO4J, ["--neo4j_uri", "{uri}", "--neo4j_password_file", "{wrong_password}"], 1,
         "wrong password", setup="wrong_password"),
    Case("password-file-missing", NEO4J, ["--neo4j_password_file", "nope.txt"], 2,
         "cannot read Neo4j password file nope.txt"),
    Case("password-file-dev-zero", NEO4J, ["--neo4j_password_file", "/dev/zero"], 2,
         "Neo4j password file /dev/zero is a device or socket, not a file"),
    Case("password-file-fifo", NEO4J, ["--neo4j_password_file", "fifo"], 2,
         "Neo4j password file fifo is a FIFO that sent no password", setup="fifo"),
    Case("unknown-database", NEO4J, ["--neo4j_database", "nosuchdb"], 1, "has no database 'nosuchdb'"),
    Case("unreachable-uri", NEO4J, ["--neo4j_uri", "bolt://127.0.0.1:{closed_port}"], 1, "cannot reach Neo4j"),
    Case("uri-bad-scheme", NEO4J, ["--neo4j_uri", "http://127.0.0.1:7474"], 2, "bad Neo4j URI"),
    Case("dataset-injection", NEO4J, ["--dataset", "cora`) DETACH DELETE n //"], 2, "invalid --dataset"),
    Case("database-injection", NEO4J, ["--neo4j_database", "neo4j`; DROP DATABASE neo4j"], 2,
         "invalid database name"),
    Case("cache-negative", NEO4J, ["--cache_mb", "-1"], 2, "--cache_mb must be >= 0"),
    Case("cache-warm-unknown", NEO4J, ["--cache_mb", "8", "--cache_warm", "lru"], 2, "--cache_warm: invalid choice"),
    Case("retry-negative", NEO4J, ["--neo4j_retry_s", "-1"], 2, "--neo4j_retry_s must be >= 0"),
    Case("normalize-unknown", NEO4J, ["--normalize_features", "zscore"], 2, "--normalize_features: invalid choice"),
    Case("feature-dimension-mismatch", NEO4J, [*SMALL, "--dataset", "{bad_features}"], 1,
         "float32", may_leave={"logs"}, quiet=False),
    # -- loader -----------------------------------------------------------------------------
    Case("loader-root-dir-missing", LOADER, ["--dataset", "cora", "--dataset_root_dir", "nowhere"], 1,
         "--dataset_root_dir nowhere is not an existing folder"),
    Case("loader-unknown-dataset", LOADER, ["--dataset", "no_such_graph"], 2, "unknown dataset 'no_such_graph'"),
    Case("loader-label-injection", LOADER, ["--dataset", "cora", "--node_label", "x`) DETACH DELETE n //"], 2,
         "invalid --node_label"),
    Case("loader-rel-type-spaces", LOADER, ["--dataset", "cora", "--rel_type", "has space"], 2, "invalid --rel_type"),
    Case("loader-name-quotes", LOADER, ["--dataset", "cora", "--name", "cora' OR 1=1 //"], 2, "invalid --name"),
    Case("loader-name-100-chars", LOADER, ["--dataset", "cora", "--name", "n" * 100], 2,
         "(100 characters) is too long for the Neo4j label derived from it"),
    Case("loader-synthetic-flag", LOADER, ["--dataset", "cora", "--num_nodes", "100"], 2,
         "apply only to --dataset synthetic"),
    Case("loader-batch-size-zero", LOADER, ["--dataset", "cora", "--batch_size", "0"], 2, "invalid --batch_size 0"),
    Case("loader-corrupt-npz", LOADER, ["--dataset", "data/cora.npz"], 1, "corrupt", setup="corrupt_npz"),
    Case("loader-method", LOADER, ["--dataset", "cora", "--method", "magic"], 2, "invalid choice: 'magic'"),
    # -- partition_graph.py -----------------------------------------------------------------
    Case("partitions-zero", PARTITION, ["--dataset", "cora", "--num_partitions", "0"], 2,
         "--num_partitions must be >= 1"),
    Case("partitions-more-than-nodes", PARTITION, ["--dataset", "cora", "--num_partitions", "5000"], 2,
         "--num_partitions 5000 exceeds the 2708 nodes", quiet=False),
    Case("partition-root-dir-missing", PARTITION, ["--dataset", "cora", "--num_partitions", "2",
         "--dataset_root_dir", "nowhere"], 1, "--dataset_root_dir nowhere is not an existing folder"),
    Case("partition-unknown-dataset", PARTITION, ["--dataset", "no_such_graph", "--num_partitions", "2"], 2,
         "unknown dataset 'no_such_graph'"),
    Case("partition-output-unwritable", PARTITION, ["--dataset", "cora", "--num_partitions", "2",
                                                    "--output_dir", "{file}/parts"], 2,
         "--output_dir '{file}/parts' is not writable"),
    Case("partition-missing-flag", PARTITION, ["--dataset", "cora"], 2,
         "the following arguments are required: --num_partitions"),
    # -- visualize.py -----------------------------------------------------------------------
    Case("visualize-missing-log-dir", VISUALIZE, ["--log_dir", "nope"], 2, "--log_dir nope does not exist"),
    Case("visualize-out-unwritable", VISUALIZE, ["--log_dir", "logs", "--out", "{file}/plots"], 2,
         "--out '{file}/plots' is not writable", setup="logs"),
]
SUBPROCESS = ["batch-size-zero", "loader-label-injection", "partitions-more-than-nodes", "visualize-missing-log-dir",
              "password-file-fifo"]


# ------------------------------------------------------------------------------------ fixtures
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def busy_socket():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    """A finished 1-epoch cora run (hidden_channels 16, run name 'old'): its checkpoint and logs."""
    tmp = tmp_path_factory.mktemp("old")
    backend = FullGraphBackend(load_dataset("cora"), fanouts=[2, 2], batch_size=64, num_loader_threads=0)
    train(backend, TrainConfig(dataset="cora", fanouts=(2, 2), num_layers=2, hidden_channels=16, batch_size=64,
                               epochs=1, log_dir=str(tmp / "logs"), checkpoint_dir=str(tmp / "ckpt"),
                               run_name="old", num_loader_threads=0))
    return tmp


@pytest.fixture(scope="module")
def partitions(tmp_path_factory) -> Path:
    """cora and (where the shared folder has it) citeseer, each in one partition."""
    out = tmp_path_factory.mktemp("parts")
    for name in ("cora", "citeseer") if _has_citeseer() else ("cora",):
        partition_dataset(PartitionConfig(dataset=name, num_partitions=1, output_dir=str(out)))
    return out


@pytest.fixture(scope="module")
def bad_features(client: Neo4jClient, tmp_path_factory) -> str:
    """A small graph in Neo4j whose stored feature bytes do not match its record's dimension."""
    root = tmp_path_factory.mktemp("syn")
    ds = load_dataset("synthetic", root=root, num_nodes=300, avg_degree=4, num_features=8, num_classes=3, seed=0)
    schema = GraphSchema.for_dataset(f"T_badx_{uuid.uuid4().hex[:8]}")
    ensure_loaded(client, ds, schema, LoadConfig(progress=False))
    client.write(f"MATCH (n:`{schema.label}`) SET n.`{schema.x_prop}` = $x", x=bytes(12))  # 3 floats, not 8
    return schema.dataset


def _has_citeseer() -> bool:
    return (sources.shared_datasets_dir() / "citeseer.npz").is_file()


def prepare(case: Case, tmp: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """Make the case's input files in ``tmp``; return the placeholder values."""
    if ("citeseer" in case.argv or case.setup == "foreign_partition") and not _has_citeseer():
        pytest.skip("needs citeseer from ../shared/datasets (a bare clone ships cora only)")
    ctx = {"file": "a_file", "closed_port": str(_closed_port())}
    (tmp / "a_file").write_text("a file where a folder is expected")  # works as root, unlike chmod
    if case.setup in ("corrupt_npz", "truncated_npz"):
        data = bytearray(SHARED_CORA.read_bytes())
        if case.setup == "truncated_npz":
            data = data[: len(data) // 2]
        else:
            data[1000:60000] = bytes(59000)
        (tmp / "data").mkdir()
        (tmp / "data" / "cora.npz").write_bytes(bytes(data))
    elif case.setup in ("checkpoint", "corrupt_checkpoint", "logs"):
        old = request.getfixturevalue("old_run")
        if case.setup == "logs":
            shutil.copytree(old / "logs", tmp / "logs")
        else:
            shutil.copytree(old / "ckpt", tmp / "ckpt")
            if case.setup == "corrupt_checkpoint":
                (tmp / "ckpt" / "old" / "checkpoint.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    elif case.setup in ("broken_partition", "foreign_partition"):
        parts = request.getfixturevalue("partitions")
        source = "cora" if case.setup == "broken_partition" else "citeseer"
        shutil.copytree(parts / source / "1-parts", tmp / "parts" / "cora" / "1-parts")
        if case.setup == "broken_partition":
            next((tmp / "parts" / "cora" / "1-parts").rglob("x_data.npy")).unlink()
    elif case.setup == "fifo":  # nobody writes to it: the read must give up, not block
        os.mkfifo(tmp / "fifo")
    elif case.setup == "wrong_password":
        settings: Neo4jSettings = request.getfixturevalue("neo4j_settings")
        (tmp / "pw").write_text("definitely-not-the-password")
        ctx.update(uri=settings.uri, wrong_password="pw")
    if "{busy_port}" in " ".join(case.argv):
        ctx["busy_port"] = str(request.getfixturevalue("busy_socket").getsockname()[1])
    if "{bad_features}" in " ".join(case.argv):
        ctx["bad_features"] = request.getfixturevalue("bad_features")
    return ctx


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_in_process(script: str, argv: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch,
                   capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capfd.readouterr()  # drop what fixtures printed
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as exited:  # run_cli always exits; anything else is a bug
        runpy.run_path(str(REPO / script), run_name="__main__")
    return exited.value.code, capfd.readouterr().err


def run_subprocess(script: str, argv: list[str], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, str(REPO / script), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return proc.returncode, proc.stderr


def check(case: Case, ctx: dict[str, str], code: int, stderr: str, before: set[str], tmp: Path) -> None:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == case.code, stderr[-3000:]
    assert len(errors) == 1 and case.expect.format(**ctx) in errors[0], stderr[-3000:]
    print(f"| {case.id} | `{' '.join([case.script, *case.argv]).format(**ctx)}` | {code} | {errors[0]} |")
    if case.quiet:
        assert stderr.strip() == errors[0], stderr[-3000:]
    else:
        others = [ln for ln in stderr.splitlines() if ln.strip() and ln not in errors]
        assert all(" INFO " in ln or " WARNING " in ln or "|" in ln for ln in others), stderr[-3000:]
    new = {p for p in tree(tmp) - before if p.split(os.sep)[0] not in case.may_leave}
    assert not new, f"left behind: {sorted(new)}"


# ------------------------------------------------------------------------------------- tests
def test_at_least_25_cases_over_every_script() -> None:
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
    assert {c.script for c in CASES} == {TRAIN, NEO4J, LOADER, PARTITION, VISUALIZE}
    assert {c.code for c in CASES} == {1, 2}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(case: Case, tmp_path: Path, request, monkeypatch, capfd) -> None:
    ctx = prepare(case, tmp_path, request)
    before = tree(tmp_path)
    code, stderr = run_in_process(case.script, [a.format(**ctx) for a in case.argv], tmp_path, monkeypatch, capfd)
    check(case, ctx, code, stderr, before, tmp_path)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS], ids=SUBPROCESS)
def test_bad_input_as_real_process(case: Case, tmp_path: Path, request) -> None:
    ctx = prepare(case, tmp_path, request)
    before = tree(tmp_path)
    code, stderr = run_subprocess(case.script, [a.format(**ctx) for a in case.argv], tmp_path)
    check(case, ctx, code, stderr, before, tmp_path)


@pytest.mark.parametrize(
    ("argv", "expect"),
    [(["--ranks", "0"], "--ranks must be a positive integer"),
     (["--backend", "magic"], "--backend must be neo4j, ladybug or in_memory"),
     (["--num_nodes", "3"], "--num_nodes is set by this script"),
     (["--master_port", "1234"], "--master_port is set by this script")],
    ids=["ranks-zero", "backend-unknown", "num-nodes-given", "master-port-given"],
)
def test_launch_script_usage_errors(argv: list[str], expect: str, tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(REPO / "jobs" / "launch_training_single_node.sh"), *argv],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and expect in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------ Cypher injection
INJECTABLE = [  # every flag whose value reaches Neo4j, per script
    (LOADER, "--dataset"), (LOADER, "--node_label"), (LOADER, "--rel_type"), (LOADER, "--name"),
    (LOADER, "--neo4j_database"),
    (NEO4J, "--dataset"), (NEO4J, "--neo4j_database"),
]


def _census(client: Neo4jClient) -> tuple[int, int, int]:
    nodes = client.read("MATCH (n) RETURN count(n) AS c")[0]["c"]
    rels = client.read("MATCH ()-[r]->() RETURN count(r) AS c")[0]["c"]
    datasets = client.read("MATCH (d:GnnDataset) RETURN count(d) AS c")[0]["c"]
    return nodes, rels, datasets


@pytest.mark.parametrize(("script", "flag"), INJECTABLE, ids=[f"{s.split('/')[-1]}{f}" for s, f in INJECTABLE])
def test_injection_strings_are_refused_before_any_query(script: str, flag: str, tmp_path: Path, monkeypatch,
                                                        capfd) -> None:
    """Identifiers are validated before connecting: the URI is a closed port, so a query attempt
    would end in "cannot reach" (exit 1) instead of the usage error."""
    base = ["--dataset", "cora"] if flag != "--dataset" else []
    for value in INJECTIONS:
        argv = [*base, flag, value, "--neo4j_uri", f"bolt://127.0.0.1:{_closed_port()}"]
        code, stderr = run_in_process(script, argv, tmp_path, monkeypatch, capfd)
        assert code == 2, (value, stderr)
        assert stderr.startswith("error: invalid ") and len(stderr.strip().splitlines()) == 1, (value, stderr)
    assert not list(tmp_path.iterdir())


def test_values_reaching_neo4j_travel_as_parameters(client: Neo4jClient, neo4j_settings: Neo4jSettings,
                                                    tmp_path: Path, monkeypatch, capfd) -> None:
    """User names go to the server as values (auth), dataset names as query parameters: injection
    strings there are just unknown users / datasets, and the database is unchanged afterwards."""
    canary = f"T_canary_{uuid.uuid4().hex[:8]}"
    client.write(f"CREATE (:`{canary}` {{id: 1}})")
    before = _census(client)
    for value in INJECTIONS:
        code, stderr = run_in_process(NEO4J, ["--neo4j_uri", neo4j_settings.uri, "--neo4j_user", value],
                                      tmp_path, monkeypatch, capfd)
        assert code == 1 and "wrong password" in stderr and len(stderr.strip().splitlines()) == 1, (value, stderr)
    from src.neo4jdb.load.records import require_loaded
    from src.core.errors import UserError

    for value in INJECTIONS:  # what --dataset would send if it were not validated first
        with pytest.raises(UserError, match="is not loaded"):
            require_loaded(client, value)
    assert _census(client) == before
    assert client.read(f"MATCH (n:`{canary}`) RETURN n.id AS id")[0]["id"] == 1
    client.write(f"MATCH (n:`{canary}`) DELETE n")
