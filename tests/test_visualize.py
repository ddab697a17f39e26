"""visualize.py on real logs of the real in-memory trainer (one short cora run per module).

The Neo4j backend's entry script needs a loaded database, so the second backend's logs (for the
comparison figure) are a copy of the real run with ``backend`` rewritten to "neo4j" and a Neo4j
server RSS filled in; the synthetic-size runs (for the scale figure) and the two-rank run are
likewise rewritten copies of the real run.  Expected summary values are computed from the JSONL
here, independently of src/plots/, and cross-checked against the trainer's summary event.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import matplotlib.image
import numpy as np
import pytest

from src.plots.figures import backend_colour
from src.plots.summary import COMPARISON_FIGURE, RUN_FIGURES, SCALE_FIGURE, SUMMARY_FILE, visualize

pytestmark = pytest.mark.slow  # one real training run per module (~15 s)

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECRET = "s3cret-value-never-printed"


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, **kwargs)


def _events(path: Path) -> list[dict[str, Any]]:
    """Valid events of one JSONL file (corrupt lines skipped, as visualize.py must do)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _derive(src: Path, dest: Path, rewrite: Callable[[dict[str, Any]], dict[str, Any]],
            name: str | None = None) -> Path:
    """Copy ``src`` into folder ``dest`` with every event passed through ``rewrite``."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(rewrite(json.loads(line))) for line in src.read_text().splitlines()]
    target = dest / (name or src.name)
    target.write_text("\n".join(lines) + "\n")
    return target


def _as_neo4j(event: dict[str, Any]) -> dict[str, Any]:
    event = {**event, "backend": "neo4j"}
    if event["event"] in ("step", "epoch"):
        event["neo4j_rss_mb"] = 1000.0 + event["epoch"] * 10 + event.get("step", 0)
    if event["event"] == "summary":
        event["peak_neo4j_rss_mb"] = 1025.0
    if event["event"] == "run_start":  # a secret that slipped into a log must not be echoed
        event["config"] = {**event["config"], "neo4j_password": SECRET}
    return event


def _as_synthetic(num_nodes: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def rewrite(event: dict[str, Any]) -> dict[str, Any]:
        event = {**event, "dataset": "synthetic"}
        if event["event"] == "run_start":
            event["num_nodes"] = num_nodes
        return event
    return rewrite


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rank0.jsonl of a real 2-epoch in-memory cora run."""
    tmp = tmp_path_factory.mktemp("train")
    proc = _run(["in-memory-alternative.py", "--dataset", "cora", "--epochs", "2", "--fanouts", "5,5",
                 "--num_layers", "2", "--batch_size", "128", "--log_dir", str(tmp / "logs"),
                 "--checkpoint_dir", str(tmp / "ckpt"), "--run_name", "r1"])
    assert proc.returncode == 0, f"trainer failed:\n{proc.stderr[-3000:]}"
    return tmp / "logs" / "r1" / "rank0.jsonl"


@pytest.fixture(scope="module")
def workspace(real_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A log dir with the real run plus rewritten copies, and one visualize.py run over it.

    Runs: r1 (real), r1-neo4j, syn-10k and syn-100k (the latter with a corrupt line in the
    middle), killed (run_start and two steps, then a line torn by the kill).
    """
    logs = tmp_path_factory.mktemp("logs")
    _derive(real_run, logs / "r1", lambda e: e)
    _derive(real_run, logs / "r1-neo4j", _as_neo4j)
    _derive(real_run, logs / "syn-10k", _as_synthetic(10_000))
    corrupt = _derive(real_run, logs / "syn-100k", _as_synthetic(100_000))
    lines = corrupt.read_text().splitlines()
    corrupt.write_text("\n".join(lines[:3] + ['{"event": "step", "epoch": 1, "lo'] + lines[3:]) + "\n")
    killed = logs / "killed"
    killed.mkdir()
    lines = real_run.read_text().splitlines()
    (killed / "rank0.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    out = tmp_path_factory.mktemp("plots")
    proc = _run(["visualize.py", "--log_dir", str(logs), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    return {"logs": logs, "out": out, "proc": proc, "summary": _parse_summary(out / "summary.md")}


def _parse_summary(path: Path) -> dict[str, dict[str, str]]:
    """summary.md table rows keyed by run, each a {header: cell} dict."""
    rows = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]
    header, body = cells[0], cells[2:]
    by_run = {row[0]: dict(zip(header, row)) for row in body}
    assert len(by_run) == len(body), "a run appears twice"
    return by_run


def _assert_png(path: Path, min_size: tuple[int, int] = (400, 600)) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert min_size[0] <= height <= 4000 and min_size[1] <= width <= 4000, (path, image.shape)
    assert image.std() > 0.01, f"{path} is blank"


def _expected(run_dir: Path) -> dict[str, Any]:
    """Summary values straight from the JSONL: slowest rank per epoch, ranks' seeds/s summed."""
    by_rank = [_events(p) for p in sorted(run_dir.glob("rank*.jsonl"))]
    epochs: dict[int, list[dict[str, Any]]] = {}
    for events in by_rank:
        for e in events:
            if e["event"] == "epoch":
                epochs.setdefault(e["epoch"], []).append(e)
    times = [max(e["epoch_time"] for e in es) for _, es in sorted(epochs.items())]
    seeds = [sum(e["seeds_per_s"] for e in es) for _, es in sorted(epochs.items())]
    evaluated = [es[0] for _, es in sorted(epochs.items()) if es[0]["val_acc"] is not None]
    best = max(evaluated, key=lambda e: e["val_acc"])  # the first epoch with the maximum
    every = [e for events in by_rank for e in events]
    rss = [e[k] for e in every for k in ("rss_mb", "peak_rss_mb") if e.get(k) is not None]
    neo4j = [e[k] for e in every for k in ("neo4j_rss_mb", "peak_neo4j_rss_mb") if e.get(k) is not None]
    start = next(e for e in every if e["event"] == "run_start")
    return {
        "backend": start["backend"], "dataset": start["dataset"], "ranks": start["world_size"],
        "nodes": start["num_nodes"], "epochs": len(epochs),
        "mean epoch time (s)": sum(times) / len(times),
        "median epoch time (s)": float(np.median(times)), "seeds/s": sum(seeds) / len(seeds),
        "best val acc": best["val_acc"], "test acc at best val": best["test_acc"],
        "peak trainer RSS (MiB)": max(rss), "peak Neo4j RSS (MiB)": max(neo4j) if neo4j else None,
    }


def _assert_row(row: dict[str, str], expected: dict[str, Any]) -> None:
    """Each cell equals the expected value to the precision it is printed with."""
    for column, want in expected.items():
        cell = row[column]
        if want is None:
            assert cell == "-", (column, cell)
        elif isinstance(want, str):
            assert cell == want, (column, cell, want)
        else:
            text = cell.replace(",", "")
            decimals = len(text.split(".")[1]) if "." in text else 0
            tolerance = 0.5 * 10**-decimals + 1e-9
            assert float(text) == pytest.approx(want, abs=tolerance), (column, cell, want)


def test_per_run_figures_are_valid_pngs(workspace: dict[str, Any]) -> None:
    for run in ("r1", "r1-neo4j", "syn-10k", "syn-100k"):
        for name in RUN_FIGURES:
            _assert_png(workspace["out"] / run / name)
    wrote = workspace["proc"].stdout
    assert f"wrote {workspace['out'] / 'r1' / 'memory.png'}" in wrote
    assert f"wrote {workspace['out'] / 'summary.md'}" in wrote


def test_cross_run_figures_exist_for_two_backends_and_sizes(workspace: dict[str, Any]) -> None:
    _assert_png(workspace["out"] / COMPARISON_FIGURE)
    _assert_png(workspace["out"] / SCALE_FIGURE)


def test_summary_has_one_row_per_run_with_the_logged_values(workspace: dict[str, Any]) -> None:
    summary, logs = workspace["summary"], workspace["logs"]
    assert sorted(summary) == sorted(["killed", "r1", "r1-neo4j", "syn-10k", "syn-100k"])
    for run in ("r1", "r1-neo4j", "syn-10k", "syn-100k"):
        assert summary[run]["status"] == "complete"
        _assert_row(summary[run], _expected(logs / run))
    # the independent computation agrees with the trainer's own summary event
    trainer = [e for e in _events(logs / "r1" / "rank0.jsonl") if e["event"] == "summary"][-1]
    expected = _expected(logs / "r1")
    assert expected["mean epoch time (s)"] == pytest.approx(trainer["mean_epoch_time"])
    assert expected["best val acc"] == trainer["best_val_acc"]
    assert expected["test acc at best val"] == trainer["test_acc_at_best_val"]
    assert expected["peak trainer RSS (MiB)"] == pytest.approx(trainer["peak_rss_mb"])
    assert summary["r1-neo4j"]["peak Neo4j RSS (MiB)"] == "1025"


def test_corrupt_lines_are_skipped_with_file_and_line(workspace: dict[str, Any]) -> None:
    stderr, logs = workspace["proc"].stderr, workspace["logs"]
    assert f"{logs / 'syn-100k' / 'rank0.jsonl'}:4: skipped corrupt line" in stderr
    assert f"{logs / 'killed' / 'rank0.jsonl'}:4: skipped corrupt line" in stderr
    assert "Traceback" not in stderr


def test_run_without_epochs_is_listed_as_incomplete(workspace: dict[str, Any]) -> None:
    row = workspace["summary"]["killed"]
    assert (row["status"], row["epochs"], row["mean epoch time (s)"], row["best val acc"]) == (
        "incomplete", "0", "-", "-")
    assert row["backend"] == "in_memory" and row["nodes"] == "2,708"
    _assert_png(workspace["out"] / "killed" / "memory.png")  # its steps still have memory samples
    assert not (workspace["out"] / "killed" / "accuracy.png").exists()
    assert "run killed has no epoch events" in workspace["proc"].stderr


def test_secrets_in_logs_are_never_echoed(workspace: dict[str, Any]) -> None:
    proc = workspace["proc"]
    outputs = [proc.stdout, proc.stderr, (workspace["out"] / "summary.md").read_text()]
    assert not any(SECRET in text for text in outputs)


def test_multi_rank_run_folder_as_log_dir(real_run: Path, tmp_path: Path) -> None:
    """Two ranks (rank 1 = rank 0's events, 1.5x slower): slowest rank's time, summed seeds/s."""
    run = tmp_path / "two-ranks"
    _derive(real_run, run, lambda e: {**e, "world_size": 2})

    def as_rank1(e: dict[str, Any]) -> dict[str, Any]:
        e = {**e, "rank": 1, "world_size": 2}
        if e["event"] == "epoch":
            e["epoch_time"] *= 1.5
        return e

    _derive(real_run, run, as_rank1, name="rank1.jsonl")
    written = visualize(run, tmp_path / "out")
    assert written[-1] == tmp_path / "out" / SUMMARY_FILE
    for name in RUN_FIGURES:
        _assert_png(tmp_path / "out" / "two-ranks" / name)
    row = _parse_summary(tmp_path / "out" / SUMMARY_FILE)["two-ranks"]
    assert row["ranks"] == "2" and row["status"] == "complete"
    _assert_row(row, _expected(run))


def test_out_named_after_the_run_is_not_nested_again(real_run: Path, tmp_path: Path) -> None:
    """``--log_dir logs/R --out plots/R`` (what jobs/quickstart.sh runs) writes plots/R/*.png, not plots/R/R/."""
    run = tmp_path / "logs" / "my-run"
    _derive(real_run, run, lambda e: e)
    out = tmp_path / "plots" / "my-run"
    written = visualize(run, out)
    for name in RUN_FIGURES:
        _assert_png(out / name)
    assert not (out / "my-run").exists() and written[-1] == out / SUMMARY_FILE


@pytest.mark.parametrize("case, code", [("missing", 2), ("empty", 1), ("file", 2)])
def test_bad_log_dir_gives_one_line_error(tmp_path: Path, case: str, code: int) -> None:
    target = tmp_path / case
    if case == "empty":
        target.mkdir()
    elif case == "file":
        target.write_text("not a folder")
    proc = _run(["visualize.py", "--log_dir", str(target), "--out", str(tmp_path / "out")])
    assert proc.returncode == code
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(target) in lines[0]


def test_help_documents_the_file_names() -> None:
    proc = _run(["visualize.py", "--help"])
    assert proc.returncode == 0
    for name in (*RUN_FIGURES, COMPARISON_FIGURE, SCALE_FIGURE, SUMMARY_FILE):
        assert name in proc.stdout


def test_backend_colours_are_fixed() -> None:
    named = [backend_colour(b) for b in ("in_memory", "neo4j", "partitioned", "ladybug")]
    assert len(set(named)) == len(named)
    assert backend_colour("some_future_backend") == backend_colour("some_future_backend")


def _with_flags(backend: str, **flags: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A copy of the real run as ``backend`` whose run_start config has ``flags`` changed."""
    def rewrite(event: dict[str, Any]) -> dict[str, Any]:
        event = {**event, "backend": backend}
        if event["event"] == "run_start":
            event["config"] = {**event["config"], **flags}
        return event
    return rewrite


def _slots(logs: Path, **kwargs: Any) -> list[Any]:
    from src.plots.comparison import comparison_slots
    from src.plots.runs import find_runs, load_run, run_metrics
    return comparison_slots([run_metrics(load_run(f)) for f in find_runs(logs)], **kwargs)


def test_comparison_refuses_runs_whose_flags_differ(real_run: Path, tmp_path: Path) -> None:
    """A batch-1024 run beside a batch-8192, 16-thread one: no figure, one warning naming the flags;
    --compare_anyway draws them and says what differs; a flag only one backend has does not count."""
    logs = tmp_path / "logs"
    _derive(real_run, logs / "mem", _with_flags("in_memory", batch_size=8192, num_workers=16))
    _derive(real_run, logs / "db", _with_flags("neo4j", batch_size=1024, num_workers=1, cache_mb=64))
    proc = _run(["visualize.py", "--log_dir", str(logs), "--out", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out" / COMPARISON_FIGURE).exists()
    warning = [ln for ln in proc.stderr.splitlines() if "not compared" in ln]
    assert len(warning) == 1, proc.stderr
    assert "batch_size: 8192 vs 1024" in warning[0] or "batch_size: 1024 vs 8192" in warning[0]
    assert "num_workers" in warning[0] and "cache_mb" not in warning[0] and "--compare_anyway" in warning[0]
    (slot,) = _slots(logs, compare_anyway=True)
    assert set(slot.differs) == {"batch_size", "num_workers"}
    proc = _run(["visualize.py", "--log_dir", str(logs), "--out", str(tmp_path / "any"), "--compare_anyway"])
    assert proc.returncode == 0, proc.stderr
    _assert_png(tmp_path / "any" / COMPARISON_FIGURE)


def test_comparison_pairs_matching_runs_and_counts_repeats(real_run: Path, tmp_path: Path) -> None:
    """Two repeats per backend with one setting, plus a 5-epoch run that matches nothing."""
    logs = tmp_path / "logs"
    for k in (1, 2):
        _derive(real_run, logs / f"mem-r{k}", _with_flags("in_memory"))
        _derive(real_run, logs / f"db-r{k}", _as_neo4j)
    _derive(real_run, logs / "db-5ep", lambda e: _with_flags("neo4j", epochs=5)(_as_neo4j(e)))
    (slot,) = _slots(logs)
    assert sorted(slot.runs) == ["in_memory", "neo4j"] and slot.differs == {}
    assert sorted(r.run for r in slot.runs["neo4j"]) == ["db-r1", "db-r2"]
    assert len(slot.runs["in_memory"]) == 2
    proc = _run(["visualize.py", "--log_dir", str(logs), "--out", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr
    _assert_png(tmp_path / "out" / COMPARISON_FIGURE)
    assert "db-5ep (neo4j)" in proc.stderr and "epochs" in proc.stderr
