"""Synthetic presets with the shape of a real graph (sizes, degree, width, classes, split sizes).

Why: the seed's headline is ogbn-products (2,449,029 nodes, 61,859,140 undirected edges, 100
features, 47 classes, 196,615 / 39,323 / 2,213,091 train/val/test), which cannot be downloaded
here.  A preset makes the power-law generator produce exactly that shape; ``num_nodes`` below the
real size scales edges and split sizes proportionally (same degree and split fractions), for
size sweeps at the real graph's degree and width.  The real ``ogbn-products`` stays a dataset
name of its own (:mod:`src.data.ogb`, needs internet).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from src.core.errors import UsageError


@dataclass(frozen=True)
class GraphShape:
    """The real graph's numbers; ``split`` are node counts (train, val, test) at ``num_nodes``."""

    num_nodes: int
    undirected_edges: int
    num_features: int
    num_classes: int
    split: tuple[int, int, int]

    def at(self, num_nodes: int) -> tuple[int, tuple[int, int, int]]:
        """(undirected pairs, split sizes) for a graph of ``num_nodes`` of this shape."""
        if num_nodes == self.num_nodes:
            return self.undirected_edges, self.split
        pairs = round(self.undirected_edges * num_nodes / self.num_nodes)
        train = max(1, round(self.split[0] * num_nodes / self.num_nodes))
        val = max(1, round(self.split[1] * num_nodes / self.num_nodes))
        return pairs, (train, val, num_nodes - train - val)


PRESETS: dict[str, GraphShape] = {
    "products": GraphShape(2_449_029, 61_859_140, 100, 47, (196_615, 39_323, 2_213_091)),
}

_PRESET_NAME = re.compile(r"synthetic_([a-z]+)_n(\d+)_s(\d+)")


def preset_params(preset: str, num_nodes: int | None, seed: int) -> dict[str, Any]:
    """The generator's parameters for ``preset`` at ``num_nodes`` (default: the real size)."""
    shape = PRESETS.get(preset)
    if shape is None:
        raise UsageError(f"unknown synthetic preset {preset!r}; known: {', '.join(PRESETS)}")
    n = shape.num_nodes if num_nodes is None else int(num_nodes)
    if n < 1000:
        raise UsageError(f"synthetic preset {preset} needs num_nodes >= 1000, got {n}")
    pairs, split = shape.at(n)
    return {"preset": preset, "num_nodes": n, "avg_degree": round(2 * pairs / n, 6),
            "num_features": shape.num_features, "num_classes": shape.num_classes, "seed": int(seed),
            "num_pairs": pairs, "split_sizes": list(split)}


def preset_dir_name(params: dict[str, Any]) -> str:
    return f"{params['preset']}_n{params['num_nodes']}_s{params['seed']}"


def preset_from_name(name: str) -> dict[str, Any] | None:
    """``{"preset", "num_nodes", "seed"}`` from ``synthetic_<preset>_n{N}_s{seed}``, else None."""
    m = _PRESET_NAME.fullmatch(name.strip())
    if m is None or m.group(1) not in PRESETS:
        return None
    return {"preset": m.group(1), "num_nodes": int(m.group(2)), "seed": int(m.group(3))}
