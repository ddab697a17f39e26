"""Synthetic node-classification graphs for scale experiments: their parameters, their names and
their out-of-core generator.

Why: scale runs need graphs of ~10M nodes / 250M edges whose labels a GNN can actually learn,
and such graphs can neither be downloaded here nor held in RAM as a whole.  Everything below is
produced in blocks of a fixed size (independent of N) and streamed into ``.npy`` files; only
O(N) node vectors (labels, sampling weights: ~20 bytes per node) stay in memory.

Model (``GENERATOR_VERSION`` 1):

* Degrees: every node gets a weight ``w ~ Pareto(xm=1, tail index 1.5)``, capped so that its
  expected degree is at most ``sqrt(N * D)``.  Both endpoints of a pair are drawn with
  probability proportional to ``w`` (Chung-Lu), so degrees follow a power law (exponent ~2.5).
* Labels: uniform over C classes.  For each pair ``(u, v)``: ``u ~ w``; with probability
  ``HOMOPHILY`` ``v ~ w`` restricted to ``u``'s class, otherwise ``v ~ w`` over all nodes.
  Edge homophily is therefore about ``HOMOPHILY + (1 - HOMOPHILY) / C``.
* Features: ``x = mu[y] + N(0, 1)``, class means ``mu ~ N(0, FEATURE_SIGNAL**2 / F)``, so the
  distance between two class means is ~1.4 noise standard deviations whatever F is: features alone
  are only weakly informative, averaging over (homophilous) neighbours makes them strong.
* Edges are stored in both directions (u->v and v->u) like the shipped graphs; self loops are
  dropped; duplicate pairs are dropped within each block of ``PAIR_BLOCK`` pairs.  Duplicates
  across blocks are kept (both directions, so the graph stays symmetric): removing them would
  need an external sort; they occur between high-degree hubs and were 0.64 % of the edges at
  1M nodes / 25M edges, 0.23 % at 10M / 250M.  Edges are not sorted.
  ``avg_degree`` is the target number of stored (directed) edges per node; the dropped self
  loops/duplicates make the real average slightly smaller.
* Split: a per-node uniform draw puts 60 % of the nodes in train, 20 % in val, 20 % in test;
  every node is labelled.  Presets (:mod:`src.data.shapes`, e.g. ogbn-products' shape) give
  exact split sizes (a seeded permutation) and an exact number of undirected pairs: pair blocks
  are drawn until that many survived, the last block subsampled.
* Determinism: block ``b`` of stream ``s`` draws from ``np.random.default_rng([seed, s, b])``,
  so the output depends only on the parameters and the constants below (recorded in the cache
  metadata; changing one of them invalidates old caches).
"""
from __future__ import annotations

import logging
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from src.core.errors import UsageError, UserError
from src.data import shapes
from src.data.npy_writer import NpyWriter

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
NODE_BLOCK = 1 << 16  # nodes per block for labels / weights / features
PAIR_BLOCK = 1 << 20  # undirected pairs per block (~150 MB of temporaries)
HOMOPHILY = 0.8
TAIL_INDEX = 1.5  # Pareto tail of the node weights -> degree exponent 2.5
FEATURE_SIGNAL = 1.0
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
PROGRESS_MIN_EDGES = 2_000_000  # show progress bars from this many target edges on

ARRAY_NAMES = ("edge_index", "x", "y", "train_idx", "val_idx", "test_idx")

SYNTHETIC = "synthetic"  # the dataset name; a generated graph is f"synthetic_{synthetic_dir_name(params)}"
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "num_nodes": 100_000,
    "avg_degree": 20,
    "num_features": 64,
    "num_classes": 10,
    "seed": 0,
}
_SYNTHETIC_EXTRA_OPTIONS = ("progress", "preset")
DISK_MARGIN = 1.1  # free space wanted beyond the estimate

# streams of the per-block random generators
_S_MEANS, _S_NODES, _S_FEATURES, _S_EDGES, _S_SPLIT = 0, 1, 2, 3, 4


def generator_constants() -> dict[str, Any]:
    """Everything besides the user parameters that determines the output (for cache checks)."""
    return {
        "version": GENERATOR_VERSION,
        "node_block": NODE_BLOCK,
        "pair_block": PAIR_BLOCK,
        "homophily": HOMOPHILY,
        "tail_index": TAIL_INDEX,
        "feature_signal": FEATURE_SIGNAL,
        "split_fractions": list(SPLIT_FRACTIONS),
    }


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def synthetic_params(**options: Any) -> dict[str, Any]:
    """Validated synthetic parameters (defaults filled in; ``None`` means default)."""
    unknown = set(options) - set(SYNTHETIC_DEFAULTS) - set(_SYNTHETIC_EXTRA_OPTIONS)
    if unknown:
        allowed = ", ".join([*SYNTHETIC_DEFAULTS, *_SYNTHETIC_EXTRA_OPTIONS])
        raise UsageError(f"unknown synthetic option(s) {', '.join(sorted(unknown))}; allowed: {allowed}")
    if options.get("preset") is not None:
        shaped = set(options) & {"avg_degree", "num_features", "num_classes"}
        if any(options[k] is not None for k in shaped):
            raise UsageError(f"synthetic preset {options['preset']} fixes {', '.join(sorted(shaped))}; drop them")
        seed = options.get("seed")
        return shapes.preset_params(str(options["preset"]), options.get("num_nodes"),
                                    SYNTHETIC_DEFAULTS["seed"] if seed is None else seed)
    params = dict(SYNTHETIC_DEFAULTS)
    params.update({k: v for k, v in options.items() if k in SYNTHETIC_DEFAULTS and v is not None})
    for k in ("num_nodes", "num_features", "num_classes", "seed"):
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise UsageError(f"synthetic option {k} must be an integer, got {v!r}")
        params[k] = int(v)
    d = params["avg_degree"]
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)) or not np.isfinite(d):
        raise UsageError(f"synthetic option avg_degree must be a number, got {d!r}")
    params["avg_degree"] = int(d) if float(d).is_integer() else float(d)
    n = params["num_nodes"]
    if n < 2:
        raise UsageError(f"synthetic num_nodes must be at least 2, got {n}")
    if not 0 < params["avg_degree"] <= n - 1:
        raise UsageError(f"synthetic avg_degree must be in (0, num_nodes-1], got {params['avg_degree']}")
    if params["num_features"] < 1:
        raise UsageError(f"synthetic num_features must be at least 1, got {params['num_features']}")
    if not 2 <= params["num_classes"] <= min(n, 2**31 - 1):
        raise UsageError(f"synthetic num_classes must be in [2, num_nodes], got {params['num_classes']}")
    if params["seed"] < 0:
        raise UsageError(f"synthetic seed must be non-negative, got {params['seed']}")
    return params


_SYNTHETIC_NAME = re.compile(r"synthetic_n(\d+)_d(\d+(?:\.\d+)?)_f(\d+)_c(\d+)_s(\d+)")


def synthetic_params_from_name(name: str) -> dict[str, Any] | None:
    """Parameters encoded in a generated graph's name ``synthetic_n{N}_d{D}_f{F}_c{C}_s{seed}``.

    None if ``name`` is not such a name.  Inverse of ``f"synthetic_{synthetic_dir_name(p)}"``.
    """
    m = _SYNTHETIC_NAME.fullmatch(name.strip())
    if m is None:
        return shapes.preset_from_name(name)
    n, d, f, c, s = m.groups()
    degree = float(d)
    return {"num_nodes": int(n), "avg_degree": int(degree) if degree.is_integer() else degree,
            "num_features": int(f), "num_classes": int(c), "seed": int(s)}


def synthetic_dir_name(params: Mapping[str, Any]) -> str:
    """``n{N}_d{D}_f{F}_c{C}_s{seed}`` (presets: ``<preset>_n{N}_s{seed}``): the cache folder, also
    used in the dataset name."""
    if params.get("preset"):
        return shapes.preset_dir_name(dict(params))
    return (
        f"n{params['num_nodes']}_d{_fmt_number(params['avg_degree'])}_f{params['num_features']}"
        f"_c{params['num_classes']}_s{params['seed']}"
    )


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values; sort + mask is ~10x faster than numpy 2's hash-based np.unique here."""
    keys = np.sort(keys)
    if keys.size > 1:
        keep = np.empty(keys.size, dtype=bool)
        keep[0] = True
        np.not_equal(keys[1:], keys[:-1], out=keep[1:])
        keys = keys[keep]
    return keys


def _blocks(total: int, size: int):
    for b, start in enumerate(range(0, total, size)):
        yield b, start, min(start + size, total)


def generate(
    out_dir: str | os.PathLike,
    *,
    num_nodes: int,
    avg_degree: float,
    num_features: int,
    num_classes: int,
    seed: int,
    progress: bool | None = None,
    preset: str | None = None,
    num_pairs: int | None = None,
    split_sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Write ``edge_index.npy, x.npy, y.npy, train_idx.npy, val_idx.npy, test_idx.npy`` into
    ``out_dir`` and return statistics for the metadata.  Memory: O(N) node vectors plus
    per-block temporaries of constant size.  ``num_pairs`` (presets): exactly that many distinct
    undirected pairs per block stream; ``split_sizes``: exact train/val/test counts.
    """
    out = Path(out_dir)
    n, f, c = int(num_nodes), int(num_features), int(num_classes)
    exact = num_pairs is not None
    num_pairs = int(num_pairs) if exact else int(round(n * float(avg_degree) / 2))
    check_disk(out, n, f, num_pairs)
    out.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = 2 * num_pairs >= PROGRESS_MIN_EDGES
    t0 = time.perf_counter()
    log.info("generating synthetic graph N=%d D=%s F=%d C=%d seed=%d into %s", n, avg_degree, f, c, seed, out)

    # --- node pass: labels, degree weights, split codes (O(N) vectors) --------------------
    y = np.empty(n, dtype=np.int32)
    w = np.empty(n, dtype=np.float64)
    codes = np.empty(n, dtype=np.int8)
    train_frac, val_frac, _ = SPLIT_FRACTIONS
    for b, lo, hi in _blocks(n, NODE_BLOCK):
        rng = np.random.default_rng([seed, _S_NODES, b])
        y[lo:hi] = rng.integers(0, c, hi - lo)
        w[lo:hi] = rng.pareto(TAIL_INDEX, hi - lo) + 1.0  # numpy's pareto is Lomax; +1 -> xm = 1
        r = rng.random(hi - lo)
        codes[lo:hi] = (r >= train_frac).astype(np.int8) + (r >= train_frac + val_frac)
    if split_sizes is not None:
        _exact_split(codes, split_sizes, seed)
    mean_w = TAIL_INDEX / (TAIL_INDEX - 1.0)
    np.minimum(w, max(1.0, mean_w * math.sqrt(n / float(avg_degree))), out=w)


    # class-sorted cumulative weights: sampling "v ~ w within class k" is a searchsorted in the
    # contiguous slice of class k
    idx_dtype = np.int32 if n < 2**31 else np.int64
    perm = np.argsort(y, kind="stable").astype(idx_dtype)
    cw = np.cumsum(w[perm])
    del w
    counts = np.bincount(y, minlength=c).astype(np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    cw_before = np.where(starts > 0, cw[np.maximum(starts - 1, 0)], 0.0)
    class_w = np.where(counts > 0, cw[np.maximum(ends - 1, 0)], 0.0) - cw_before
    last = np.maximum(ends - 1, 0)

    with NpyWriter(out / "y.npy", "<i8", (n,)) as yw:
        for _, lo, hi in _blocks(n, NODE_BLOCK):
            yw.write(y[lo:hi])
    for code, name in enumerate(("train_idx", "val_idx", "test_idx")):
        np.save(out / f"{name}.npy", np.flatnonzero(codes == code).astype("<i8"))
    del codes

    # --- features ------------------------------------------------------------------------
    means = np.random.default_rng([seed, _S_MEANS, 0]).normal(
        0.0, FEATURE_SIGNAL / math.sqrt(f), size=(c, f)
    ).astype(np.float32)
    with NpyWriter(out / "x.npy", "<f4", (n, f)) as xw, tqdm(
        total=n, unit="node", unit_scale=True, desc="synthetic features", disable=not progress
    ) as bar:
        for b, lo, hi in _blocks(n, NODE_BLOCK):
            rng = np.random.default_rng([seed, _S_FEATURES, b])
            xb = rng.standard_normal((hi - lo, f), dtype=np.float32)
            xb += means[y[lo:hi]]
            xw.write(xb)
            bar.update(hi - lo)

    # --- edges: sampled pairs -> raw src/dst files -> edge_index.npy ----------------------
    src_path, dst_path = out / "src.bin", out / "dst.bin"
    num_edges = 0
    same_class = 0
    sampler = _PairSampler(n, perm, cw, y, cw_before, class_w, starts, last)
    with open(src_path, "wb") as fs, open(dst_path, "wb") as fd, tqdm(
        total=2 * num_pairs, unit="edge", unit_scale=True, desc="synthetic edges", disable=not progress
    ) as bar:
        for b, a, bb in _pair_blocks(sampler, seed, num_pairs, exact):
            same_class += int(np.count_nonzero(y[a] == y[bb]))
            np.concatenate([a, bb]).astype("<i8", copy=False).tofile(fs)
            np.concatenate([bb, a]).astype("<i8", copy=False).tofile(fd)
            num_edges += 2 * a.size
            bar.update(2 * a.size if exact else 2 * min(PAIR_BLOCK, num_pairs - b * PAIR_BLOCK))
            del a, bb
    del perm, cw, y

    with NpyWriter(out / "edge_index.npy", "<i8", (2, num_edges)) as ew:
        ew.copy_from(src_path)
        ew.copy_from(dst_path)
    src_path.unlink()
    dst_path.unlink()

    seconds = time.perf_counter() - t0
    log.info("synthetic graph: %d nodes, %d edges in %.1f s", n, num_edges, seconds)
    return {
        "num_edges": num_edges,
        "num_pairs_sampled": num_pairs,
        "edge_homophily": (2 * same_class / num_edges) if num_edges else None,
        "generation_seconds": round(seconds, 3),
    }


def disk_needed(num_nodes: int, num_features: int, num_pairs: int) -> int:
    """Bytes the cache takes while being written: features, labels and splits, and the edges twice
    (raw src/dst files, then ``edge_index.npy``)."""
    return 4 * num_nodes * num_features + 24 * num_nodes + 2 * 2 * 16 * num_pairs


def check_disk(out: Path, num_nodes: int, num_features: int, num_pairs: int) -> None:
    """Refuse (one line, before anything is written) a graph whose cache would not fit on the disk."""
    folder = next((p for p in (out, *out.parents) if p.exists()), Path("/"))
    need = int(disk_needed(num_nodes, num_features, num_pairs) * DISK_MARGIN)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise UserError(f"the synthetic graph ({num_nodes:,} nodes, {2 * num_pairs:,} edges) needs ~{need / 2**30:.1f} "
                        f"GiB in {folder} but only {free / 2**30:.1f} GiB are free: free space, pick a smaller "
                        "--num_nodes, or pass --dataset_root_dir on a larger disk")


def _exact_split(codes: np.ndarray, sizes: Sequence[int], seed: int) -> None:
    """Overwrite ``codes`` with exactly ``sizes`` train/val/test nodes, chosen by a seeded permutation."""
    train, val, test = (int(v) for v in sizes)
    if min(train, val, test) < 0 or train + val + test != codes.size:
        raise UsageError(f"split sizes {train}/{val}/{test} must be non-negative and sum to {codes.size}")
    order = np.random.default_rng([seed, _S_SPLIT, 0]).permutation(codes.size)
    codes[order[:train]] = 0
    codes[order[train:train + val]] = 1
    codes[order[train + val:]] = 2


class _PairSampler:
    """Draws a block of Chung-Lu pairs with class homophily (see the module docstring)."""

    def __init__(self, n, perm, cw, y, cw_before, class_w, starts, last) -> None:
        self.n, self.perm, self.cw, self.y = n, perm, cw, y
        self.cw_before, self.class_w, self.starts, self.last = cw_before, class_w, starts, last
        self.total_w = float(cw[-1])

    def block(self, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Distinct undirected pairs ``(a < b)`` of ``m`` draws, self loops and duplicates dropped."""
        n, cw, total_w = self.n, self.cw, self.total_w
        # pairs are i.i.d., so sorting the u draws only reorders them, and sorted queries make
        # searchsorted cache friendly (~5x faster than random ones)
        r_u = np.sort(rng.random(m))
        same = rng.random(m) < HOMOPHILY
        r_v = rng.random(m)
        iu = np.searchsorted(cw, r_u * total_w, side="right")
        np.minimum(iu, n - 1, out=iu)
        u = self.perm[iu].astype(np.int64)
        del iu, r_u
        cu = self.y[u]
        t = np.where(same, self.cw_before[cu], 0.0) + r_v * np.where(same, self.class_w[cu], total_w)
        del r_v
        order = np.argsort(t)
        iv = np.empty(m, dtype=np.int64)
        iv[order] = np.searchsorted(cw, t[order], side="right")
        del t, order
        # float rounding at class borders must not leak into the neighbouring class
        np.clip(iv, np.where(same, self.starts[cu], 0), np.where(same, self.last[cu], n - 1), out=iv)
        v = self.perm[iv].astype(np.int64)
        del iv, cu, same
        keep = u != v
        u, v = u[keep], v[keep]
        key = sorted_unique(np.minimum(u, v) * n + np.maximum(u, v))
        del u, v, keep
        a = key // n
        return a, key - a * n


def _pair_blocks(sampler: _PairSampler, seed: int, num_pairs: int, exact: bool):
    """``(block, a, b)`` per pair block: ``num_pairs`` draws, or (exact) blocks until ``num_pairs`` survived."""
    if not exact:
        for b, lo, hi in _blocks(num_pairs, PAIR_BLOCK):
            yield (b, *sampler.block(np.random.default_rng([seed, _S_EDGES, b]), hi - lo))
        return
    done, b = 0, 0
    while done < num_pairs:
        rng = np.random.default_rng([seed, _S_EDGES, b])
        a, bb = sampler.block(rng, min(PAIR_BLOCK, 2 * (num_pairs - done) + 16))
        want = num_pairs - done
        if a.size > want:  # the last block: a uniform subset, kept in sorted order
            pick = np.sort(rng.choice(a.size, want, replace=False))
            a, bb = a[pick], bb[pick]
        done += a.size
        yield b, a, bb
        b += 1
