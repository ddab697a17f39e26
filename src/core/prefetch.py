"""Run sampling and feature fetching of the next batches in threads around a ``NodeLoader``.

Why threads and not processes (``DataLoader(num_workers=...)``): the Neo4j driver holds
sockets and a connection pool that must not be forked, and the graph / feature arrays are
large, so copying or re-opening them per worker process costs memory and start-up time.  The
heavy work releases the GIL (numpy sorts and gathers, torch ``index_select``, socket IO of the
Neo4j driver), so threads overlap it with the training step.

The loader is not reimplemented: batches of indices come from the loader's own
``batch_sampler`` and ``generator`` (so shuffling is identical to iterating the ``NodeLoader``),
sampling is ``node_loader.collate_fn`` and feature fetching ``node_loader.filter_fn``.
"""
from __future__ import annotations

import concurrent.futures.thread
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

from torch.utils.data import DataLoader
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader

log = logging.getLogger(__name__)

THREAD_NAME_PREFIX = "prefetch"


def _keep_indices(index: list[int]) -> list[int]:
    return index


class PrefetchLoader:
    """Iterable of ``Data`` batches, in order, with up to ``num_threads`` batches in flight.

    Each batch carries ``t_sample`` (``collate_fn``), ``t_fetch`` (``filter_fn``) and ``t_wait``
    (how long the consumer blocked for it), all in seconds.  ``finish`` (optional) runs on each batch
    in the consumer's thread as it is handed over (``t_decode``): work that would make a batch bigger
    while it waits in the queue, such as decoding compressed feature rows (``--decode_rows step``).
    ``num_threads=0`` loads each batch synchronously when asked for (then ``t_wait`` is the whole load time).  An exception in a
    worker is re-raised in the consumer; stopping early (``break``) or an exception cancels
    queued batches and joins the threads when the iterator is closed.  A ``for`` loop closes it
    on ``break``; an iterator held in a variable (or in a live traceback) is closed when it is
    collected or by calling its ``close()``.

    ``fetch_after_step`` (set by the consumer before iterating; the training loop's ``--fetch_rows after_step``):
    the threads still sample ``num_threads`` batches ahead, but rows of at most ``num_threads`` batches are alive,
    the consumer's included, instead of ``num_threads + 1``: a batch's rows are fetched once a turn is free, and a
    consumer that asks for the next batch hands back the turn of the one it had. With one thread no fetch runs
    beside a step's activations (and none overlaps the step: only sampling does); with ``n`` threads ``n - 1`` do.

    ``NodeLoader.filter_per_worker`` only chooses which DataLoader process runs ``filter_fn``;
    this class runs it in its own threads, so it switches the flag off (otherwise
    ``collate_fn`` would already filter and the two steps could not be timed apart).  The
    loader's own ``num_workers`` processes are not used.
    """

    def __init__(self, node_loader: NodeLoader, num_threads: int, finish: Callable[[Data], Data] | None = None):
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {num_threads}")
        if node_loader.batch_sampler is None:
            raise ValueError("PrefetchLoader needs a NodeLoader built with a batch_size")
        if node_loader.filter_per_worker:
            log.debug("PrefetchLoader: setting filter_per_worker=False on %r", node_loader)
            node_loader.filter_per_worker = False
        if node_loader.num_workers:
            log.warning("PrefetchLoader ignores NodeLoader num_workers=%d; it uses %d threads",
                        node_loader.num_workers, num_threads)
        self.node_loader = node_loader
        self.num_threads = num_threads
        self.finish = finish
        self.fetch_after_step = False

    def __len__(self) -> int:
        return len(self.node_loader.batch_sampler)

    def _load(self, index: list[int], gate: _FetchGate | None = None) -> Data | None:
        """Sample and fetch one batch; runs in a worker thread (or inline for 0 threads). With a ``gate``, the
        fetch waits for its turn; None: the iteration was closed meanwhile."""
        t0 = time.perf_counter()
        out = self.node_loader.collate_fn(index)
        t_sample = time.perf_counter() - t0
        if gate is not None and not gate.enter():
            return None
        t1 = time.perf_counter()
        data = self.node_loader.filter_fn(out)
        data.t_sample = t_sample
        data.t_fetch = time.perf_counter() - t1
        return data

    def _finish(self, data: Data) -> Data:
        if self.finish is None:
            return data
        t0 = time.perf_counter()
        data = self.finish(data)
        data.t_decode = time.perf_counter() - t0
        return data

    def _index_batches(self) -> Iterator[list[int]]:
        """The index batches one iteration of ``node_loader`` would sample.

        A plain DataLoader over the same dataset, batch sampler and generator: like the
        ``NodeLoader``'s, its iterator draws a base seed from the generator before the sampler
        shuffles, so the permutation matches the one a direct iteration would use.
        """
        loader = self.node_loader
        return iter(DataLoader(loader.dataset, batch_sampler=loader.batch_sampler,
                               collate_fn=_keep_indices, generator=loader.generator))

    def __iter__(self) -> Iterator[Data]:
        indices = self._index_batches()
        if self.num_threads == 0:
            yield from self._iter_sync(indices)
        else:
            yield from self._iter_threaded(indices)

    def _iter_sync(self, indices: Iterator[list[int]]) -> Iterator[Data]:
        for index in indices:
            t0 = time.perf_counter()
            data = self._load(index)
            data.t_wait = time.perf_counter() - t0
            yield self._finish(data)
            data = None  # not held while the next batch loads

    def _iter_threaded(self, indices: Iterator[list[int]]) -> Iterator[Data]:
        pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix=THREAD_NAME_PREFIX)
        pending: deque[Future[Data | None]] = deque()
        gate = _FetchGate(self.num_threads) if self.fetch_after_step else None
        try:
            for index in indices:
                pending.append(pool.submit(self._load, index, gate))
                if len(pending) == self.num_threads:
                    break
            while pending:
                t0 = time.perf_counter()
                data = pending.popleft().result()
                wait = time.perf_counter() - t0
                # Refill before handing the batch over, so num_threads batches load while the
                # consumer works on this one.
                index = next(indices, None)
                if index is not None:
                    pending.append(pool.submit(self._load, index, gate))
                data.t_wait = wait
                yield self._finish(data)
                data = None  # not held while the next batch loads
                if gate is not None:
                    gate.leave()  # the consumer asked for the next batch: it is done with this one
        finally:
            # Runs on exhaustion, on a worker exception and on close() (consumer broke out).
            if gate is not None:
                gate.close()
            pool.shutdown(wait=True, cancel_futures=True)


class _FetchGate:
    """Turns for fetching rows: ``num_threads`` at first, one more each time the consumer is done with a batch.

    No deadlock: when the consumer waits for a batch it has handed back every earlier one, so the turns left
    cover every batch in flight (at most ``num_threads``)."""

    def __init__(self, num_threads: int) -> None:
        self._turns = threading.Semaphore(num_threads)
        self._closed = threading.Event()
        self._num_threads = num_threads

    def enter(self) -> bool:
        """Wait for a turn; False if the iteration was closed (the batch is not wanted) or the interpreter exits:
        a consumer that died of an exception may leave its iterator unclosed (a traceback holds it), and the exit
        joins the pool's threads, so a worker waiting here for good would hang the process."""
        while not self._turns.acquire(timeout=0.5):
            if self._closed.is_set() or getattr(concurrent.futures.thread, "_shutdown", False):
                return False
        return not self._closed.is_set()

    def leave(self) -> None:
        self._turns.release()

    def close(self) -> None:
        """Wake every worker still waiting for a turn, to give up."""
        self._closed.set()
        self._turns.release(self._num_threads)
