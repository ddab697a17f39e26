"""Edge splits for link prediction: a seeded split of a graph's node pairs into train / val / test.

Why pairs: an undirected graph stores every edge twice (``u -> v`` and ``v -> u``); splitting the
two directions independently would put half of a test edge into the training graph, where message
passing sees it (the classic leakage). So the unit of the split is the unordered pair
``{u, v}`` (``u != v``): every edge between two nodes, in either direction and parallel copies
included, belongs to the pair's part. Self-loops are never supervision targets and stay in the
message-passing graph.

The split is a pure function of the graph's pair set, the fractions and the seed (pairs sorted,
then one seeded permutation), so the Neo4j store (``src/neo4jdb/edge_split.py``, which writes it
into the database) and the in-memory backend compute the same split from the same graph.
Pairs beyond ``train + val + test`` (fractions summing below 1) stay in the message-passing graph
but are never supervision targets. Validation and test pairs are never message-passing edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.core.csr import CSRGraph
from src.core.errors import UsageError

PARTS = ("train", "val", "test")
HELD_OUT = ("val", "test")


@dataclass(frozen=True)
class EdgeSplitSpec:
    """Fractions of the pairs in train / val / test (summing to at most 1) and the split's seed."""

    train: float = 0.85
    val: float = 0.05
    test: float = 0.10
    seed: int = 0

    def __post_init__(self) -> None:
        fractions = (self.train, self.val, self.test)
        if any(not 0 <= f <= 1 for f in fractions):
            raise UsageError(f"edge split fractions must each be in [0, 1], got {self.text}")
        if sum(fractions) > 1 + 1e-9:
            raise UsageError(f"edge split fractions {self.text} sum to {sum(fractions):.4g}, more than 1: "
                             "lower them (e.g. 0.85,0.05,0.10)")
        if self.seed < 0:
            raise UsageError(f"the edge split seed must be >= 0, got {self.seed}")

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> EdgeSplitSpec:
        """``"TRAIN,VAL,TEST"`` (e.g. ``0.85,0.05,0.10``) as a spec; anything else is one line."""
        try:
            train, val, test = (float(p) for p in str(text).split(","))
        except ValueError:
            raise UsageError(f"edge split {text!r} is not TRAIN,VAL,TEST fractions, e.g. 0.85,0.05,0.10") from None
        return cls(train, val, test, int(seed))

    @property
    def text(self) -> str:
        return f"{self.train:g},{self.val:g},{self.test:g}"

    def sizes(self, num_pairs: int) -> dict[str, int]:
        """Pairs per part: val and test rounded down, train as asked; an empty part is one line."""
        val, test = int(self.val * num_pairs), int(self.test * num_pairs)
        train = min(int(round(self.train * num_pairs)), num_pairs - val - test)
        sizes = {"train": train, "val": val, "test": test}
        empty = [p for p, n in sizes.items() if n == 0]
        if empty:
            raise UsageError(f"edge split {self.text} of {num_pairs:,} node pairs leaves {', '.join(empty)} empty: "
                             "raise its fraction")
        return sizes


def pair_keys(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    """One int64 key per unordered pair: ``min * N + max`` (the same for ``u -> v`` and ``v -> u``)."""
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    return np.minimum(src, dst) * np.int64(num_nodes) + np.maximum(src, dst)


def unique_pairs(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """The graph's unordered pairs without self-loops, sorted: int64 ``[P, 2]`` with ``u < v``."""
    src, dst = np.asarray(edge_index[0], dtype=np.int64), np.asarray(edge_index[1], dtype=np.int64)
    keep = src != dst
    keys = np.unique(pair_keys(src[keep], dst[keep], num_nodes))
    return np.stack([keys // num_nodes, keys % num_nodes], axis=1)


@dataclass(frozen=True, eq=False)
class EdgeSplit:
    """The pairs (``[P_part, 2]``, ``u < v``) of each part of one graph's split, with its spec."""

    spec: EdgeSplitSpec
    num_nodes: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise ValueError(f"unknown edge split part {name!r}; expected one of {PARTS}")
        return getattr(self, name)

    def held_out_keys(self) -> np.ndarray:
        """Sorted pair keys of the validation and test pairs: never message-passing edges in training."""
        return np.sort(np.concatenate([pair_keys(p[:, 0], p[:, 1], self.num_nodes) for p in (self.val, self.test)]))

    def is_held_out(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Whether each edge ``src[i] -> dst[i]`` belongs to a held-out pair (either direction)."""
        keys = self.held_out_keys()
        probe = pair_keys(src, dst, self.num_nodes)
        at = np.minimum(np.searchsorted(keys, probe), max(len(keys) - 1, 0))
        return keys[at] == probe if len(keys) else np.zeros(len(probe), dtype=bool)

    def counts(self) -> dict[str, int]:
        return {p: len(self.part(p)) for p in PARTS}


def split_pairs(pairs: np.ndarray, num_nodes: int, spec: EdgeSplitSpec) -> EdgeSplit:
    """Split sorted unique ``pairs`` (:func:`unique_pairs`) with one permutation seeded by ``spec.seed``."""
    sizes = spec.sizes(len(pairs))
    order = np.random.default_rng(np.random.SeedSequence([spec.seed, 0x3D6E])).permutation(len(pairs))
    val = pairs[order[:sizes["val"]]]
    test = pairs[order[sizes["val"]:sizes["val"] + sizes["test"]]]
    train = pairs[order[sizes["val"] + sizes["test"]:sizes["val"] + sizes["test"] + sizes["train"]]]
    return EdgeSplit(spec, int(num_nodes), *(np.ascontiguousarray(p[np.lexsort((p[:, 1], p[:, 0]))])
                                             for p in (train, val, test)))


def split_graph(csr: CSRGraph, spec: EdgeSplitSpec) -> EdgeSplit:
    """The split of ``csr``'s pairs (the graph every sampler of the dataset reads)."""
    return split_pairs(unique_pairs(csr_edge_index(csr), csr.num_nodes), csr.num_nodes, spec)


def csr_edge_index(csr: CSRGraph) -> np.ndarray:
    """``[2, E]`` (source, destination) of a CSR by destination, in its order."""
    dst = np.repeat(np.arange(csr.num_nodes, dtype=np.int64), np.diff(csr.indptr))
    return np.stack([csr.indices, dst])


def training_graph(csr: CSRGraph, split: EdgeSplit) -> CSRGraph:
    """``csr`` without the held-out pairs' edges; every remaining node keeps its neighbours' order."""
    src, dst = csr_edge_index(csr)
    keep = ~split.is_held_out(src, dst)
    indptr = np.zeros(csr.num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(dst[keep], minlength=csr.num_nodes), out=indptr[1:])
    return CSRGraph(indptr=indptr, indices=src[keep])


def eval_negatives(pairs: np.ndarray, num_nodes: int, k: int, seed: int) -> np.ndarray:
    """``[len(pairs), k]`` fixed negative tails per positive pair ``(u, v)``: ``(u, w_j)`` scored against ``(u, v)``.

    Uniform over the nodes, a function of (pairs, seed) only, so every backend ranks each positive
    against the same negatives. Not checked against the graph (as PyG's samplers do not check):
    on cora a uniform pair is an edge with probability 0.14%; tests/test_link_sampling.py counts it.
    """
    if k < 1:
        raise UsageError(f"--eval_negatives must be >= 1 (got {k})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E47, len(pairs)]))
    return rng.integers(0, num_nodes, size=(len(pairs), k), dtype=np.int64)
