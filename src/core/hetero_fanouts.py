"""Per relationship-type fanouts (PyG's ``num_neighbors`` dict) from ``--fanouts`` and their checks.

Why a module: the flag, the samplers and the checkpoint identity must agree on one form, a dict
``edge type -> [fanout per hop]`` over every edge type of the dataset, in the dataset's order.
Accepted: ``writes:10,5;cites:5,5`` (relationship names; types not named get ``default``), a JSON
object of the same, or a plain list ``10,5`` for every type. 0 never samples that type at that hop,
-1 takes all neighbours.
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

from src.core.errors import UserError

EdgeType = tuple[str, str, str]
Fanouts = dict[EdgeType, list[int]]
REVERSE_PREFIX = "rev_"


def reverse_edge_type(edge_type: EdgeType) -> EdgeType:
    """``(src, rel, dst)`` walked backwards: ``(dst, rev_<rel>, src)``, PyG ``ToUndirected``'s name."""
    src, rel, dst = edge_type
    return (dst, REVERSE_PREFIX + rel, src)


def _ints(values: Sequence, rel: str) -> list[int]:
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise UserError(f"fanouts of {rel!r} must be integers, got {list(values)!r}") from None
    if not out or any(k < -1 for k in out):
        raise UserError(f"fanouts of {rel!r} must be a non-empty list of integers >= -1 (-1: all), got {out}")
    return out


def fanout_lists(text: str | Mapping | Sequence[int]) -> dict[str, list[int]] | list[int]:
    """The flag's text as ``{key: [fanout per hop]}`` or one list for every type (no dataset needed)."""
    if isinstance(text, str):
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                text = json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise UserError(f"--fanouts is not valid JSON ({exc.msg}); e.g. '{{\"cites\": [5, 5]}}'") from None
        elif ":" in stripped:
            pairs: dict[str, list[str]] = {}
            for part in (p for p in stripped.split(";") if p.strip()):
                if ":" not in part:
                    raise UserError(f"--fanouts entry {part!r} has no 'relationship:' prefix; "
                                    "write e.g. 'writes:10,5;cites:5,5'")
                rel, _, values = part.partition(":")
                pairs[rel.strip()] = values.split(",")
            text = pairs
        else:
            text = stripped.split(",")
    if not isinstance(text, Mapping):
        return _ints(text, "every relationship type")
    return {str(k) if not isinstance(k, (tuple, list)) else ",".join(k):
            _ints(v if not isinstance(v, str) else v.split(","), str(k)) for k, v in text.items()}


def per_hop_max(text: str | Mapping | Sequence[int]) -> tuple[int, ...]:
    """The largest fanout of each hop (what logs and the homogeneous checks see of per-type fanouts)."""
    lists = fanout_lists(text)
    if isinstance(lists, list):
        return tuple(lists)
    _same_lengths(lists)  # type: ignore[arg-type]
    return tuple(max(hop) for hop in zip(*lists.values()))


def parse_fanouts(text: str | Mapping | Sequence[int], edge_types: Sequence[EdgeType],
                  default: Sequence[int] | None = None) -> Fanouts:
    """The fanout dict of ``text`` for ``edge_types``; every list has the same length (the hop count).

    Keys are relationship names (``cites``) or ``src,rel,dst`` triples. An unknown relationship type,
    lists of different lengths, or an edge type left without fanouts (no ``default``) is one line."""
    by_rel = {e[1]: e for e in edge_types}
    given = fanout_lists(text)
    if isinstance(given, list):
        lists = {e: list(given) for e in edge_types}
    else:
        lists = {_edge_type(key, by_rel, edge_types): values for key, values in given.items()}
        _same_lengths(lists)
        for e in edge_types:
            if e not in lists:
                if default is None:
                    raise UserError(f"--fanouts gives no fanouts for relationship type {e[1]!r}; add "
                                    f"'{e[1]}:K1,K2' (0 never samples it)")
                lists[e] = _ints(default, e[1])
    _same_lengths(lists)
    return {e: lists[e] for e in edge_types}


def _same_lengths(lists: Fanouts) -> None:
    if len({len(v) for v in lists.values()}) > 1:
        detail = ", ".join(f"{e[1] if isinstance(e, tuple) else e}: {len(v)}" for e, v in lists.items())
        raise UserError(f"--fanouts lists must all have one entry per hop, got lengths {detail}; "
                        "give every relationship type the same number of hops (0 to skip a hop)")


def _edge_type(key: object, by_rel: dict[str, EdgeType], edge_types: Sequence[EdgeType]) -> EdgeType:
    parts = tuple(key) if isinstance(key, (tuple, list)) else tuple(str(key).split(","))
    if len(parts) == 1 and parts[0].strip() in by_rel:
        return by_rel[parts[0].strip()]
    if len(parts) == 3 and tuple(p.strip() for p in parts) in edge_types:
        return tuple(p.strip() for p in parts)  # type: ignore[return-value]
    raise UserError(f"--fanouts names unknown relationship type {key!r}; the dataset has "
                    f"{', '.join(by_rel)}")


def check_node_type(node_type: str, node_types: Sequence[str], what: str = "--target_type") -> str:
    """An unknown node type (a target, or a key of a per-type setting) is one line."""
    if node_type not in node_types:
        raise UserError(f"{what} names unknown node type {node_type!r}; the dataset has {', '.join(node_types)}")
    return node_type


def num_hops(fanouts: Fanouts) -> int:
    return len(next(iter(fanouts.values())))
