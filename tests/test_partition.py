"""Partitioning and the partitioned backend: real graphs (cora, amazon_cs), real processes, real RPC.

Partition files are checked against the source graph (every node once, every edge once, bit-exact
features, halos); METIS must cut fewer edges than random; CLI errors are one line with exit 2.
Two real processes then sample across partitions through a probe script (written to tmp_path)
that opens the backend exactly as ``in-memory-alternative.py`` does, and a short 2-rank training
run of ``in-memory-alternative.py`` on cora must learn (rank 0 partitions the graph itself).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from src.data.graph import GraphDataset
from src.data.sources import load_dataset
from src.core.errors import UsageError
from src.in_memory.partition import PartitionConfig, partition_dataset
from src.core.ports import free_port_pair
from tests.subprocs import communicate_all

REPO = Path(__file__).resolve().parent.parent
PROCESS_TIMEOUT = 240  # seconds; generous because the 2-core test machine may be shared
FANOUTS = (5, 3)

PROBE = '''
"""Open the partitioned backend as rank --rank of 2, sample/fetch fixed seeds, save the results."""
import argparse, json, os, signal, time

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.sampler import NodeSamplerInput

from src.train import distributed
from src.in_memory.partitioned import open_partitioned_backend
from src.in_memory.router import PartitionedSampler
from src.core.errors import run_cli
from src.train.config import TrainConfig


def sample(backend, seeds, fanouts):
    sampler = PartitionedSampler(backend.router, list(fanouts), seed=7)
    out = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.from_numpy(seeds)))
    return {"node": out.node.numpy(), "row": out.row.numpy(), "col": out.col.numpy(),
            "num_sampled_nodes": np.array(out.num_sampled_nodes),
            "num_sampled_edges": np.array(out.num_sampled_edges)}


def main():
    p = argparse.ArgumentParser()
    for name in ("--parts", "--out", "--seeds", "--fanouts"):
        p.add_argument(name)
    p.add_argument("--rank", type=int)
    p.add_argument("--port", type=int)
    p.add_argument("--die", action="store_true", help="rank 1 is killed, rank 0 then asks it")
    a = p.parse_args()
    fanouts = tuple(int(k) for k in a.fanouts.split(","))
    cfg = TrainConfig(dataset="cora", num_nodes=2, node_rank=a.rank, master_addr="127.0.0.1",
                      master_port=a.port, fanouts=fanouts, batch_size=16, num_loader_threads=2,
                      concurrency=2)
    seeds = np.load(a.seeds)
    with open_partitioned_backend(cfg, a.parts) as backend:
        if a.die:
            if a.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(2)
            t0 = time.perf_counter()
            try:
                sample(backend, seeds, fanouts)
            finally:
                print(f"failed after {time.perf_counter() - t0:.1f} s", flush=True)
        result = {f"{key}{run}": value for run in range(2)
                  for key, value in sample(backend, seeds, fanouts).items()}
        x, y = backend.router.features(result["node0"])
        batch = next(iter(backend.make_loader(torch.from_numpy(seeds), shuffle=False, seed=7)))
        splits = {f"split_{s}": backend.split_nodes(s).numpy() for s in ("train", "val", "test")}
        np.savez(a.out, x=x.toarray() if sp.issparse(x) else x, x_sparse=sp.issparse(x), y=y,
                 batch_n_id=batch.n_id.numpy(), batch_x=batch.x.to_dense().numpy(), batch_x_sparse=batch.x.is_sparse,
                 batch_y=batch.y.numpy(), batch_edge_index=batch.edge_index.numpy(), **result, **splits)
        print("stats", json.dumps(backend.stats()), flush=True)
    distributed.destroy()


if __name__ == "__main__":
    run_cli(main)
'''


# ------------------------------------------------------------------------------------ helpers
def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}


def run_two(argv_of_rank: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(argv, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argv_of_rank]
    return communicate_all(procs, PROCESS_TIMEOUT)


def partition_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "partition_graph.py"), *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=PROCESS_TIMEOUT)


def load_part(root: Path, i: int) -> dict[str, np.ndarray]:
    """A partition's arrays; ``x`` dense either way (CSR-held rows densified), ``x_csr`` whether it was CSR."""
    names = ("nodes", "indptr", "indices", "halo", "y", "train_idx", "val_idx", "test_idx")
    folder = root / f"part_{i}"
    p = {name: np.load(folder / f"{name}.npy") for name in names}
    p["x_csr"] = (folder / "x_indptr.npy").exists()
    if p["x_csr"]:
        data, indices, indptr = (np.load(folder / f"x_{name}.npy") for name in ("data", "indices", "indptr"))
        num_features = json.loads((root / "meta.json").read_text())["num_features"]
        p["x"] = sp.csr_matrix((data, indices, indptr), shape=(len(p["nodes"]), num_features)).toarray()
    else:
        p["x"] = np.load(folder / "x.npy")
    return p


def edge_keys(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(src, dtype=np.int64) * n + np.asarray(dst, dtype=np.int64)


@pytest.fixture(scope="module")
def datasets() -> dict[str, GraphDataset]:
    return {name: load_dataset(name) for name in ("cora", "amazon_cs")}


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory, datasets: dict[str, GraphDataset]) -> dict[tuple, Any]:
    """Partition results by (dataset, k, method), made once for the module."""
    out = tmp_path_factory.mktemp("partitions")
    results = {}
    for name, k, method in [("cora", 2, "metis"), ("cora", 2, "random"), ("cora", 3, "random"),
                            ("cora", 1, "metis"), ("amazon_cs", 2, "metis"), ("amazon_cs", 2, "random")]:
        cfg = PartitionConfig(dataset=name, num_partitions=k, method=method, output_dir=str(out / method))
        results[name, k, method] = partition_dataset(cfg)
    return results


# ----------------------------------------------------------------------- partition contents
@pytest.mark.parametrize("key", [("cora", 2, "metis"), ("cora", 3, "random"), ("cora", 1, "metis"),
                                 ("amazon_cs", 2, "metis")])
def test_partitions_preserve_nodes_edges_features_and_halos(key: tuple, parts: dict, datasets: dict) -> None:
    name, k, method = key
    ds, result = datasets[name], parts[key]
    meta, root = result.meta, result.root
    n = ds.num_nodes
    node_map = np.load(root / "node_map.npy")
    assert node_map.shape == (n,) and int(node_map.max()) == k - 1
    identity = (meta["dataset"], meta["num_partitions"], meta["method"], meta["fingerprint"])
    assert identity == (name, k, method, ds.fingerprint())
    owned, keys = [], []
    codes = ds.split_codes()
    for i in range(k):
        p = load_part(root, i)
        nodes = p["nodes"]
        assert np.all(np.diff(nodes) > 0) and np.all(node_map[nodes] == i)
        owned.append(nodes)
        degree = np.diff(p["indptr"])
        keys.append(edge_keys(p["indices"], np.repeat(nodes, degree), n))
        # halo: exactly the non-owned in-neighbours
        assert np.array_equal(p["halo"], np.unique(p["indices"][node_map[p["indices"]] != i]))
        assert p["x"].dtype == np.float32
        assert p["x_csr"] == (meta["features"] == "csr") == (name == "cora")  # sparse by the loader's rule
        assert np.array_equal(p["x"].view(np.uint32), ds.features(nodes).view(np.uint32))  # bit-exact
        assert np.array_equal(p["y"], ds.y[nodes])
        for code, split in enumerate(("train", "val", "test")):
            assert np.array_equal(p[f"{split}_idx"], nodes[codes[nodes] == code])
        sizes = {"nodes": len(nodes), "edges": int(degree.sum()), "halo": len(p["halo"])}
        sizes.update({split: len(p[f"{split}_idx"]) for split in ("train", "val", "test")})
        assert meta["partitions"][i] == sizes
    # every node in exactly one partition, every source edge in exactly one partition
    assert np.array_equal(np.sort(np.concatenate(owned)), np.arange(n))
    src, dst = ds.edge_index
    assert np.array_equal(np.sort(np.concatenate(keys)), np.sort(edge_keys(src, dst, n)))
    assert meta["edge_cut"] == int(np.count_nonzero(node_map[src] != node_map[dst]))
    sizes = [p["nodes"] for p in meta["partitions"]]
    assert meta["balance"] == pytest.approx(max(sizes) / (n / k))
    if k == 1:
        assert meta["edge_cut"] == 0 and meta["partitions"][0]["halo"] == 0


@pytest.mark.parametrize("name", ["cora", "amazon_cs"])
def test_metis_cuts_fewer_edges_than_random(name: str, parts: dict) -> None:
    metis = parts[name, 2, "metis"].meta
    random = parts[name, 2, "random"].meta
    assert metis["edge_cut"] < 0.5 * random["edge_cut"], (metis["edge_cut"], random["edge_cut"])
    assert random["balance"] == pytest.approx(1.0, abs=1e-3)  # equal-size random parts
    assert metis["balance"] < 1.05


def test_existing_output_reused_refused_or_replaced(tmp_path: Path) -> None:
    cfg = PartitionConfig(dataset="cora", num_partitions=2, output_dir=str(tmp_path))
    first = partition_dataset(cfg)
    stamp = (first.root / "meta.json").stat().st_mtime_ns
    again = partition_dataset(cfg)
    assert first.created and not again.created and again.meta == first.meta
    assert (first.root / "meta.json").stat().st_mtime_ns == stamp  # a no-op
    other = PartitionConfig(dataset="cora", num_partitions=2, output_dir=str(tmp_path), method="random")
    with pytest.raises(UsageError, match="different partitioning.*method=metis.*--overwrite"):
        partition_dataset(other)
    assert not partition_dataset(other, any_method=True).created  # what training asks for
    replaced = partition_dataset(PartitionConfig(**{**other.__dict__, "overwrite": True}))
    assert replaced.created and replaced.meta["method"] == "random"
    # a folder of an older format (dense rows of sparse features) is a stale cache: redone
    meta = json.loads((first.root / "meta.json").read_text())
    (first.root / "meta.json").write_text(json.dumps({**meta, "format": 1}))
    redone = partition_dataset(other)
    assert redone.created and redone.meta["format"] == first.meta["format"] and redone.meta["method"] == "random"
    # an interrupted run (no meta.json) is detected and redone without --overwrite
    (first.root / "meta.json").unlink()
    assert partition_dataset(cfg).created
    assert not list(tmp_path.glob("cora/.*"))  # no temporary folders left behind


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where ``partition_graph.py`` already made parts/cora/2-parts (METIS)."""
    cwd = tmp_path_factory.mktemp("cli")
    ok = partition_cli("--dataset", "cora", "--num_partitions", "2", "--output_dir", "parts", cwd=cwd)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("partitioned: ")
    assert "edge cut" in ok.stdout and "balance" in ok.stdout and "peak RSS" in ok.stdout
    assert "writing partitions" in ok.stderr  # the progress bar
    return cwd


def test_cli_rerun_is_a_no_op(cli_dir: Path) -> None:
    again = partition_cli("--dataset", "cora", "--num_partitions", "2", "--output_dir", "parts", cwd=cli_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already partitioned")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dataset", "cora", "--num_partitions", "0"], "--num_partitions must be >= 1"),
        (["--dataset", "cora", "--num_partitions", "5000"], "exceeds the 2708 nodes"),
        (["--dataset", "no_such_graph", "--num_partitions", "2"], "unknown dataset 'no_such_graph'"),
        (["--dataset", "cora", "--num_partitions", "2", "--method", "random"], "holds a different partitioning"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(args: list[str], expected: str, cli_dir: Path) -> None:
    bad = partition_cli(*args, "--output_dir", "parts", cwd=cli_dir)
    assert bad.returncode == 2, bad.stderr
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0], bad.stderr
    assert "Traceback" not in bad.stderr


# ---------------------------------------------------------------------- two real processes
def cross_partition_seeds(root: Path, ds: GraphDataset) -> np.ndarray:
    """Seeds of both partitions whose in-neighbours include nodes of the other partition."""
    node_map = np.load(root / "node_map.npy")
    seeds = []
    for i in range(2):
        p = load_part(root, i)
        dst = np.repeat(p["nodes"], np.diff(p["indptr"]))
        crossing = np.unique(dst[node_map[p["indices"]] != i])
        seeds.append(crossing[:24])
    return np.concatenate(seeds).astype(np.int64)


def probe(tmp_path: Path, root_dir: Path, seeds: np.ndarray, *extra: str) -> list[subprocess.CompletedProcess]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    np.save(tmp_path / "seeds.npy", seeds)
    port = free_port_pair()
    return run_two([[sys.executable, str(script), "--rank", str(r), "--port", str(port), "--parts", str(root_dir),
                     "--out", str(tmp_path / f"rank{r}.npz"), "--seeds", str(tmp_path / "seeds.npy"),
                     "--fanouts", ",".join(map(str, FANOUTS)), *extra] for r in range(2)], tmp_path)


def check_sample(out: dict[str, np.ndarray], run: int, ds: GraphDataset, node_map: np.ndarray,
                 seeds: np.ndarray) -> None:
    """Real edges only, min(fanout, degree) distinct neighbours per frontier node, every hop."""
    n = ds.num_nodes
    node, row, col = out[f"node{run}"], out[f"row{run}"], out[f"col{run}"]
    src, dst = node[row], node[col]
    assert np.array_equal(node[:len(seeds)], seeds)
    assert np.isin(edge_keys(src, dst, n), edge_keys(*ds.edge_index, n)).all()
    in_degree = np.bincount(ds.edge_index[1], minlength=n)
    sampled_nodes, sampled_edges = out[f"num_sampled_nodes{run}"], out[f"num_sampled_edges{run}"]
    begin_node, begin_edge = 0, 0
    for hop, fanout in enumerate(FANOUTS):
        frontier = np.arange(begin_node, begin_node + sampled_nodes[hop])
        edges = slice(begin_edge, begin_edge + sampled_edges[hop])
        assert np.isin(col[edges], frontier).all()
        per_node = np.bincount(col[edges] - begin_node, minlength=len(frontier))
        assert np.array_equal(per_node, np.minimum(in_degree[node[frontier]], fanout))
        pairs = edge_keys(src[edges], dst[edges], n)
        assert len(np.unique(pairs)) == len(pairs)  # without replacement
        assert np.count_nonzero(node_map[src[edges]] != node_map[dst[edges]]) > 0  # crossed partitions
        begin_node += sampled_nodes[hop]
        begin_edge += sampled_edges[hop]


def test_two_rank_sampling_and_features_across_partitions(tmp_path: Path, parts: dict, datasets: dict) -> None:
    ds, result = datasets["cora"], parts["cora", 2, "metis"]
    root_dir = result.root.parent.parent  # <partition_dir>/cora/2-parts
    seeds = cross_partition_seeds(result.root, ds)
    procs = probe(tmp_path, root_dir, seeds)
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    node_map = np.load(result.root / "node_map.npy")
    for rank, out in enumerate(outs):
        for run in range(2):
            check_sample(out, run, ds, node_map, seeds)
        for key in ("node", "row", "col"):
            assert np.array_equal(out[f"{key}0"], out[f"{key}1"])  # same seed: same sample
            assert np.array_equal(out[f"{key}0"], outs[0][f"{key}0"])  # on either rank
        node = out["node0"]
        assert out["x_sparse"] and out["batch_x_sparse"]  # cora's bag of words stays sparse, remote rows too
        assert np.array_equal(out["x"].view(np.uint32), ds.features(node).view(np.uint32))
        assert np.array_equal(out["y"], ds.y[node])
        # the NodeLoader path: first batch of 16 seeds, features and labels of every node
        assert np.array_equal(out["batch_n_id"][:16], seeds[:16])
        assert np.array_equal(out["batch_x"].view(np.uint32), ds.features(out["batch_n_id"]).view(np.uint32))
        assert np.array_equal(out["batch_y"], ds.y[out["batch_n_id"]])
        ei, ids, n = out["batch_edge_index"], out["batch_n_id"], ds.num_nodes
        assert np.isin(edge_keys(ids[ei[0]], ids[ei[1]], n), edge_keys(*ds.edge_index, n)).all()
        for split in ("train", "val", "test"):
            assert np.array_equal(out[f"split_{split}"], np.sort(getattr(ds, f"{split}_idx")))
    stats = [json.loads(line[len("stats "):]) for p in procs
             for line in p.stdout.splitlines() if line.startswith("stats ")]
    assert all(s["remote_requests"] > 0 and s["remote_feature_rows"] > 0 for s in stats)


def test_dead_peer_gives_one_line_error_quickly(tmp_path: Path, parts: dict, datasets: dict) -> None:
    result = parts["cora", 2, "metis"]
    seeds = cross_partition_seeds(result.root, datasets["cora"])
    start = time.monotonic()
    rank0, rank1 = probe(tmp_path, result.root.parent.parent, seeds, "--die")
    assert rank1.returncode == -9
    assert rank0.returncode == 1, rank0.stderr[-3000:]
    errors = [ln for ln in rank0.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "request to rank 1 failed" in errors[0], rank0.stderr[-3000:]
    failed_after = float(rank0.stdout.split("failed after ")[1].split(" s")[0])
    assert failed_after < 60
    assert time.monotonic() - start < PROCESS_TIMEOUT


@pytest.mark.slow
def test_two_rank_training_on_cora_learns_and_logs_both_ranks(tmp_path: Path) -> None:
    port = free_port_pair()
    args = ["--dataset", "cora", "--epochs", "10", "--fanouts", "10,10", "--num_layers", "2",
            "--hidden_channels", "64", "--batch_size", "32", "--lr", "0.01", "--num_loader_threads", "1",
            "--eval_every", "5", "--partition_dir", "parts", "--log_dir", "logs", "--checkpoint_dir", "ckpt",
            "--run_name", "run", "--num_nodes", "2", "--master_addr", "127.0.0.1", "--master_port", str(port)]
    procs = run_two([[sys.executable, str(REPO / "in-memory-alternative.py"), *args, "--node_rank", str(r)]
                     for r in range(2)], tmp_path)
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((tmp_path / "parts" / "cora" / "2-parts" / "meta.json").read_text())
    assert meta["method"] == "metis"  # made by rank 0 on the fly
    logs = [[json.loads(line) for line in (tmp_path / "logs" / "run" / f"rank{r}.jsonl").read_text().splitlines()]
            for r in range(2)]
    for rank, events in enumerate(logs):
        assert {e["backend"] for e in events} == {"in_memory"}
        assert [e["event"] for e in events][0] == "run_start" and events[-1]["event"] == "summary"
        epochs = [e for e in events if e["event"] == "epoch"]
        assert len(epochs) == 10 and epochs[-1]["stats"]["partition"] == rank
        assert epochs[-1]["stats"]["remote_requests"] > 0
    final = [[e["test_acc"] for e in events if e["event"] == "epoch"][-1] for events in logs]
    assert final[0] == final[1] and final[0] >= 0.70, final


def test_training_reports_a_partitioning_error_once(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "in-memory-alternative.py"), "--dataset", "no_such_graph",
                           "--partition_dir", "parts", "--log_dir", "logs"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "unknown dataset 'no_such_graph'" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
