"""PrefetchLoader: same batches as a sequential run, in order, bounded, no hangs, no leaks."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader

from src.core.csr import CSRGraph
from src.core.sampling import CSRNeighborSampler
from src.core.prefetch import THREAD_NAME_PREFIX, PrefetchLoader

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # next to the repo
if not (DATASETS / "load_npz.py").exists():
    pytest.skip(f"shipped datasets not found in {DATASETS}", allow_module_level=True)
sys.path.insert(0, str(DATASETS))
from load_npz import load  # noqa: E402

TIMEOUT = 20.0
BATCH_SIZE = 256
FANOUTS = [15, 10, 5]


@pytest.fixture(scope="module")
def amazon() -> tuple[Data, CSRGraph]:
    d = load(str(DATASETS / "amazon_cs.npz"))
    n = len(d["y"])
    data = Data(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]),
                edge_index=torch.from_numpy(d["edge_index"]))
    return data, CSRGraph.from_edge_index(d["edge_index"], n)


class SlowSampler(CSRNeighborSampler):
    """Random per-batch delay (so threads finish out of order), counts calls, can fail.

    ``fail_at`` is a batch number of an unshuffled loader (first input id // batch size).
    """

    def __init__(self, csr: CSRGraph, fanouts=(10, 5), seed: int = 0, fail_at: int | None = None):
        super().__init__(csr, list(fanouts), seed=seed)
        self.fail_at = fail_at
        self.started = 0
        self.lock = threading.Lock()

    def sample_from_nodes(self, inputs, **kwargs):
        with self.lock:
            self.started += 1
        first = int(inputs.input_id[0])
        time.sleep(float(np.random.default_rng(first).uniform(0, 0.02)))
        if self.fail_at is not None and first == self.fail_at * BATCH_SIZE:
            raise RuntimeError(f"sampling failed in batch {self.fail_at}")
        return super().sample_from_nodes(inputs, **kwargs)


def loader_for(data: Data, sampler, shuffle: bool = True) -> NodeLoader:
    return NodeLoader(data, node_sampler=sampler, input_nodes=torch.arange(3000),
                      batch_size=BATCH_SIZE, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(3))


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


def run_with_timeout(fn) -> None:
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) if it does not end."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(TIMEOUT)
    assert not worker.is_alive(), f"did not finish within {TIMEOUT}s (hang)"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("num_threads", [1, 2, 4])
def test_threads_give_identical_batches_in_order(amazon, num_threads: int) -> None:
    data, csr = amazon
    sequential = list(PrefetchLoader(loader_for(data, CSRNeighborSampler(csr, FANOUTS, 5)), 0))
    threaded_loader = PrefetchLoader(loader_for(data, SlowSampler(csr, FANOUTS, 5)), num_threads)
    threaded = list(threaded_loader)
    assert len(threaded) == len(sequential) == len(threaded_loader)
    for a, b in zip(sequential, threaded):
        for key in ("n_id", "input_id", "edge_index", "x", "y"):
            assert torch.equal(a[key], b[key]), key
    assert not prefetch_threads()


def test_same_batches_as_plain_node_loader(amazon) -> None:
    data, csr = amazon
    plain = list(loader_for(data, CSRNeighborSampler(csr, [10, 5], seed=1)))
    fetched = list(PrefetchLoader(loader_for(data, CSRNeighborSampler(csr, [10, 5], seed=1)), 2))
    assert [b.n_id.tolist() for b in plain] == [b.n_id.tolist() for b in fetched]
    assert all(torch.equal(a.x, b.x) for a, b in zip(plain, fetched))


@pytest.mark.parametrize("num_threads", [0, 2])
def test_timing_attributes(amazon, num_threads: int) -> None:
    data, csr = amazon
    for batch in PrefetchLoader(loader_for(data, SlowSampler(csr)), num_threads):
        for key in ("t_sample", "t_fetch", "t_wait"):
            assert isinstance(batch[key], float) and batch[key] >= 0.0, key
        assert batch.t_sample > 0.0 and batch.t_fetch > 0.0
        if num_threads == 0:
            assert batch.t_wait >= batch.t_sample + batch.t_fetch


def test_at_most_num_threads_batches_ahead(amazon) -> None:
    data, csr = amazon
    sampler = SlowSampler(csr)
    loader = PrefetchLoader(loader_for(data, sampler, shuffle=False), 3)
    for consumed, batch in enumerate(loader, start=1):
        assert batch.input_id[0].item() == (consumed - 1) * BATCH_SIZE  # in order
        time.sleep(0.01)  # a slow consumer: the workers would run ahead if unbounded
        assert sampler.started <= consumed + 3
    assert consumed == len(loader)


@pytest.mark.parametrize("num_threads", [0, 1, 3])
def test_worker_exception_reaches_consumer_without_hang(amazon, num_threads: int) -> None:
    data, csr = amazon
    seen: list[int] = []

    def consume() -> None:
        loader = loader_for(data, SlowSampler(csr, fail_at=4), shuffle=False)
        for batch in PrefetchLoader(loader, num_threads):
            seen.append(batch.batch_size)

    with pytest.raises(RuntimeError, match="sampling failed in batch 4"):
        run_with_timeout(consume)
    assert len(seen) == 4  # the batches before the failing one were delivered
    assert not prefetch_threads()


def test_early_break_stops_all_threads(amazon) -> None:
    data, csr = amazon
    sampler = SlowSampler(csr)
    loader = PrefetchLoader(loader_for(data, sampler), 4)

    def consume() -> None:
        for i, _ in enumerate(loader):
            if i == 1:
                break

    run_with_timeout(consume)
    assert not prefetch_threads()
    assert sampler.started <= 2 + 4
    assert len(list(loader)) == len(loader)  # the loader is reusable after a break


def test_default_node_loader_filter_per_worker_is_handled(amazon) -> None:
    data, csr = amazon
    node_loader = loader_for(data, CSRNeighborSampler(csr, [5], seed=0))
    assert node_loader.filter_per_worker  # PyG's default for CPU data
    batch = next(iter(PrefetchLoader(node_loader, 1)))
    assert torch.equal(batch.x, data.x[batch.n_id]) and batch.t_fetch > 0.0


def test_rejects_negative_threads(amazon) -> None:
    data, csr = amazon
    with pytest.raises(ValueError):
        PrefetchLoader(loader_for(data, CSRNeighborSampler(csr, [5], seed=0)), -1)
