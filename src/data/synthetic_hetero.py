"""Seeded synthetic heterogeneous graphs (``--dataset synthetic_hetero``): papers, authors, venues.

Why: a heterogeneous model must be shown to use what the types carry, so the labels here depend on
*typed* neighbourhoods. Model (``HETERO_GENERATOR_VERSION`` 1), with N nodes in total:

* node types: ``paper`` (50 % of N; features ``x = mu[y] + N(0, 1)``, class means of norm
  ``FEATURE_SIGNAL``: weak alone; labels uniform over C; split 60/20/20), ``author`` (45 %, a
  class each, no features) and ``venue`` (5 %, at least C, a class each, no features);
* ``publishes`` (venue -> paper): every paper has exactly one venue, of its class with
  probability ``VENUE_HOMOPHILY``, else any;
* ``writes`` (author -> paper), 1 + Poisson(2) authors per paper, drawn by Pareto productivity
  weights, of the paper's class with probability ``AUTHOR_HOMOPHILY``; ``written_by``
  (paper -> author) is its reverse, so an author's in-degree follows a power law;
* ``cites`` (paper -> paper): Poisson(D) cited papers per paper drawn by Pareto popularity,
  independent of the labels (noise that a model which cannot tell types apart averages in).

Flattened to one type (featureless nodes as zero rows) a GraphSAGE mixes the citations' noise with
the authors' and loses the venue's identity; a typed model weighs each relationship on its own and
learns a venue embedding. Deterministic: stream ``s`` draws from ``default_rng([seed, s])``. The
graph is built in memory (O(N + E) numpy vectors: ~0.5 GB at N = 1M, D = 10).
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any

import numpy as np

from src.data.hetero import HeteroGraphDataset, NodeTypeData
from src.core.errors import UsageError
from src.data.synthetic import (SPLIT_FRACTIONS, TAIL_INDEX, synthetic_dir_name, synthetic_params,
                                synthetic_params_from_name)

log = logging.getLogger(__name__)

HETERO_GENERATOR_VERSION = 1
SYNTHETIC_HETERO = "synthetic_hetero"
SHARES = {"paper": 0.5, "author": 0.45, "venue": 0.05}
VENUE_HOMOPHILY = 0.9
AUTHOR_HOMOPHILY = 0.8
MEAN_EXTRA_AUTHORS = 2.0
FEATURE_SIGNAL = 0.5
TARGET_TYPE = "paper"
_S_NODES, _S_FEATURES, _S_VENUES, _S_AUTHORS, _S_CITES = range(5)
_NAME = re.compile(r"synthetic_hetero_(n\d+_d\d+(?:\.\d+)?_f\d+_c\d+_s\d+)")


def hetero_name(params: dict[str, Any]) -> str:
    """``synthetic_hetero_n{N}_d{D}_f{F}_c{C}_s{seed}``, as the homogeneous generator names its graphs."""
    return f"{SYNTHETIC_HETERO}_{synthetic_dir_name(params)}"


def params_from_name(name: str) -> dict[str, Any] | None:
    """The parameters a generated graph's name encodes, None if it is not such a name."""
    m = _NAME.fullmatch(name.strip())
    return None if m is None else synthetic_params_from_name(f"synthetic_{m.group(1)}")


def _counts(n: int, c: int) -> dict[str, int]:
    venues = max(c, int(n * SHARES["venue"]))
    papers = max(1, int(n * SHARES["paper"]))
    return {"paper": papers, "author": max(1, n - papers - venues), "venue": venues}


def _pareto_pick(rng: np.random.Generator, weights_cum: np.ndarray, ids: np.ndarray, m: int) -> np.ndarray:
    """``m`` draws from ``ids`` with probability proportional to the weights whose cumsum is given."""
    at = np.searchsorted(weights_cum, rng.random(m) * weights_cum[-1], side="right")
    return ids[np.minimum(at, len(ids) - 1)]


def _typed_pick(rng: np.random.Generator, cls: np.ndarray, target_cls: np.ndarray, homophily: float,
                weights: np.ndarray) -> np.ndarray:
    """For each entry of ``target_cls``: an id of that class with probability ``homophily``, else any id;
    within the chosen pool by ``weights``."""
    out = np.empty(len(target_cls), dtype=np.int64)
    same = rng.random(len(target_cls)) < homophily
    everyone = np.arange(len(cls))
    out[~same] = _pareto_pick(rng, np.cumsum(weights), everyone, int((~same).sum()))
    for k in np.unique(target_cls[same]):
        pool = np.flatnonzero(cls == k)
        where = np.flatnonzero(same & (target_cls == k))
        if len(pool) == 0:
            pool = everyone
        out[where] = _pareto_pick(rng, np.cumsum(weights[pool]), pool, len(where))
    return out


def generate_hetero(**options: Any) -> HeteroGraphDataset:
    """The graph of these synthetic options (``num_nodes``, ``avg_degree``, ``num_features``,
    ``num_classes``, ``seed``; as the homogeneous generator validates them)."""
    options.pop("progress", None)
    p = synthetic_params(**options)
    n, c, f, seed = p["num_nodes"], p["num_classes"], p["num_features"], p["seed"]
    if n < 3 * c:
        raise UsageError(f"synthetic_hetero needs num_nodes >= 3 * num_classes ({3 * c}), got {n}")
    counts = _counts(n, c)
    npap, nauth, nven = counts["paper"], counts["author"], counts["venue"]
    rng = np.random.default_rng([seed, _S_NODES])
    y = rng.integers(0, c, npap)
    author_cls = rng.integers(0, c, nauth)
    venue_cls = np.arange(nven) % c  # every class has a venue
    rng.shuffle(venue_cls)
    r = rng.random(npap)
    codes = (r >= SPLIT_FRACTIONS[0]).astype(np.int8) + (r >= SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1])
    productivity = rng.pareto(TAIL_INDEX, nauth) + 1.0
    popularity = rng.pareto(TAIL_INDEX, npap) + 1.0

    frng = np.random.default_rng([seed, _S_FEATURES])
    means = frng.normal(0.0, FEATURE_SIGNAL / math.sqrt(f), size=(c, f)).astype(np.float32)
    x = frng.standard_normal((npap, f), dtype=np.float32) + means[y]

    vrng = np.random.default_rng([seed, _S_VENUES])
    venue = _typed_pick(vrng, venue_cls, y, VENUE_HOMOPHILY, np.ones(nven))
    publishes = np.stack([venue, np.arange(npap)])

    arng = np.random.default_rng([seed, _S_AUTHORS])
    per_paper = 1 + arng.poisson(MEAN_EXTRA_AUTHORS, npap)
    paper_of = np.repeat(np.arange(npap), per_paper)
    author = _typed_pick(arng, author_cls, y[paper_of], AUTHOR_HOMOPHILY, productivity)
    key = np.unique(paper_of * nauth + author)  # an author signs a paper once
    writes = np.stack([key % nauth, key // nauth])

    crng = np.random.default_rng([seed, _S_CITES])
    cites_per = crng.poisson(float(p["avg_degree"]), npap)
    citing = np.repeat(np.arange(npap), cites_per)
    cited = _pareto_pick(crng, np.cumsum(popularity), np.arange(npap), len(citing))
    keep = citing != cited
    key = np.unique(citing[keep] * npap + cited[keep])
    cites = np.stack([key // npap, key % npap])

    nodes = {
        "paper": NodeTypeData(npap, x=x, y=y.astype(np.int64), train_idx=np.flatnonzero(codes == 0),
                              val_idx=np.flatnonzero(codes == 1), test_idx=np.flatnonzero(codes == 2)),
        "author": NodeTypeData(nauth),
        "venue": NodeTypeData(nven),
    }
    edges = {("author", "writes", "paper"): writes, ("paper", "written_by", "author"): writes[::-1].copy(),
             ("paper", "cites", "paper"): cites, ("venue", "publishes", "paper"): publishes}
    edges = {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in edges.items()}
    ds = HeteroGraphDataset(hetero_name(p), nodes, edges, TARGET_TYPE, c,
                            meta={"source": SYNTHETIC_HETERO, "params": p, "version": HETERO_GENERATOR_VERSION})
    log.info("synthetic_hetero: %s nodes, %s edges", counts, {k[1]: v.shape[1] for k, v in edges.items()})
    return ds
