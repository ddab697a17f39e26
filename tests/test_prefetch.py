"""PrefetchLoader: same batches as a sequential run, in order, bounded, no hangs, no leaks."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
import weakref
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


def wait_for(condition, timeout: float = TIMEOUT / 2) -> None:
    """Poll ``condition`` until it holds (a loaded machine may be slow; a fixed sleep would make tests flaky)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.005)


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


@pytest.mark.parametrize("after_step", [False, True])
def test_early_break_stops_all_threads(amazon, after_step: bool) -> None:
    data, csr = amazon
    sampler = SlowSampler(csr)
    loader = PrefetchLoader(loader_for(data, sampler), 4)
    loader.fetch_after_step = after_step  # workers then wait for a turn to fetch: close() must wake them

    def consume() -> None:
        for i, _ in enumerate(loader):
            if i == 1:
                wait_for(lambda: sampler.started >= 2 + 4 - 1)  # every pending batch sampled (at the gate)
                time.sleep(0.05)
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


def counting_fetches(node_loader: NodeLoader, on_fetch=None) -> list[int]:
    """Wrap ``node_loader.filter_fn``; the list grows by one as each fetch of rows starts."""
    started: list[int] = []
    filter_fn = node_loader.filter_fn

    def counted(out):
        started.append(len(started))
        if on_fetch is not None:
            on_fetch()
        return filter_fn(out)

    node_loader.filter_fn = counted
    return started


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_fetch_after_step_gives_identical_batches(amazon, num_threads: int) -> None:
    data, csr = amazon
    sequential = list(PrefetchLoader(loader_for(data, CSRNeighborSampler(csr, FANOUTS, 5)), 0))
    gated = PrefetchLoader(loader_for(data, SlowSampler(csr, FANOUTS, 5)), num_threads)
    gated.fetch_after_step = True
    batches = []
    run_with_timeout(lambda: batches.extend(gated))
    assert len(batches) == len(sequential)
    for a, b in zip(sequential, batches):
        for key in ("n_id", "input_id", "edge_index", "x", "y"):
            assert torch.equal(a[key], b[key]), key
    assert not prefetch_threads()


@pytest.mark.parametrize("after_step", [False, True])
def test_fetch_after_step_bounds_rows_alive(amazon, after_step: bool) -> None:
    """A slow consumer: ahead, the threads fetch ``num_threads`` batches beyond the one in the step; after_step
    one fewer, while sampling still runs ``num_threads`` ahead."""
    data, csr, threads = *amazon, 3
    sampler = SlowSampler(csr)
    node_loader = loader_for(data, sampler, shuffle=False)
    fetched = counting_fetches(node_loader)
    loader = PrefetchLoader(node_loader, threads)
    loader.fetch_after_step = after_step
    fetched_ahead, sampled_ahead = [], []

    bound = threads - 1 if after_step else threads

    def consume() -> None:
        for consumed, batch in enumerate(loader, start=1):
            if consumed == 1:  # the step: the workers run up to their bounds meanwhile, not beyond
                wait_for(lambda: sampler.started - consumed == threads and len(fetched) - consumed == bound)
                time.sleep(0.1)
            fetched_ahead.append(len(fetched) - consumed)
            sampled_ahead.append(sampler.started - consumed)

    run_with_timeout(consume)
    assert fetched_ahead[0] == max(fetched_ahead) == bound
    assert sampled_ahead[0] == max(sampled_ahead) == threads


def test_fetch_after_step_drops_the_last_batch_before_the_next_fetch(amazon) -> None:
    """With one thread, each fetch starts only once the consumer let go of its batch, so the rows of two batches
    are never alive at once (the generator itself must not keep the batch it handed over)."""
    data, csr = amazon
    refs: list[weakref.ref] = []
    alive_at_fetch: list[int] = []
    node_loader = loader_for(data, SlowSampler(csr), shuffle=False)
    counting_fetches(node_loader, lambda: alive_at_fetch.append(sum(r() is not None for r in refs)))
    loader = PrefetchLoader(node_loader, 1)
    loader.fetch_after_step = True

    def consume() -> None:
        for batch in loader:
            refs.append(weakref.ref(batch.x))
            time.sleep(0.02)
            del batch  # as the training loop does before asking for the next batch

    run_with_timeout(consume)
    assert len(alive_at_fetch) == len(loader) and alive_at_fetch[0] == 0
    assert max(alive_at_fetch) == 0, alive_at_fetch


def test_consumer_dying_with_its_iterator_unclosed_still_exits(tmp_path: Path) -> None:
    """A step that raises leaves the iterator to a traceback (never closed), a worker waiting for its turn to fetch:
    the interpreter's exit joins the pool's threads, so the gate must let that worker go."""
    script = tmp_path / "dies.py"
    script.write_text(f"""
import sys, torch
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader
from src.core.csr import CSRGraph
from src.core.sampling import CSRNeighborSampler
from src.core.prefetch import PrefetchLoader
edge_index = torch.randint(0, 500, (2, 4000))
data = Data(x=torch.randn(500, 8), y=torch.zeros(500, dtype=torch.long), edge_index=edge_index)
loader = PrefetchLoader(NodeLoader(data, node_sampler=CSRNeighborSampler(CSRGraph.from_edge_index(
    edge_index.numpy(), 500), [5], seed=0), input_nodes=torch.arange(500), batch_size=50), 1)
loader.fetch_after_step = True
KEPT = iter(loader)
next(KEPT)
raise RuntimeError("the step failed")
""")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "the step failed" in out.stderr
