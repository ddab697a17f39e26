"""Read-only checks of the user's graph before a registration writes anything (``inspect_graph``).

Why before: a bad feature, target or split property found half-way would leave a
half-registered dataset; each problem is found here by aggregate Cypher over the label and
reported as one line with its count and the fix. Nothing here writes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from src.client import Neo4jClient
from src.core.errors import UserError
from src.neo4jdb.register.spec import SPLIT_VALUES, RegisterSpec

NUMERIC = {"INTEGER", "FLOAT"}
LARGEST_FLOAT = 1.7976931348623157e308  # NOT abs(e) <= it: NaN or infinite


@dataclass
class GraphFacts:
    """What the checks found: sizes, the feature layout, the class vocabulary (sorted)."""

    num_nodes: int
    num_relationships: int
    num_features: int
    feature_kind: str  # "list", "scalars" or "bytes" (float32 little-endian)
    classes: list[Any]
    missing_features: int = 0
    missing_target: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)


def _types(raw: list[str]) -> set[str]:
    """``LIST<INTEGER NOT NULL | FLOAT NOT NULL> NOT NULL`` -> {"LIST", "INTEGER", "FLOAT"}."""
    out: set[str] = set()
    for t in raw:
        t = t.replace(" NOT NULL", "")
        m = re.fullmatch(r"LIST<(.*)>", t)
        if m:
            out.add("LIST")
            out.update(p.strip() for p in m.group(1).split("|") if p.strip() != "NOTHING")
        else:
            out.add(t)
    return out


def check_names(client: Neo4jClient, spec: RegisterSpec) -> None:
    """The label and the relationship type exist (a typo would otherwise register an empty graph)."""
    check_labels(client, [spec.label], "--node_label")
    check_rel_types(client, [spec.rel_type], "--rel_type")


def check_labels(client: Neo4jClient, wanted: list[str], flag: str) -> None:
    labels = client.read("CALL db.labels() YIELD label RETURN collect(label) AS l")[0]["l"]
    for label in wanted:
        if label not in labels:
            raise UserError(f"unknown label {label!r} in Neo4j database {client.database!r} (labels there: "
                            f"{', '.join(sorted(labels)[:20]) or 'none'}); pass the label of your nodes in {flag}")


def check_rel_types(client: Neo4jClient, wanted: list[str], flag: str) -> None:
    types = client.read("CALL db.relationshipTypes() YIELD relationshipType AS t RETURN collect(t) AS l")[0]["l"]
    for rel_type in wanted:
        if rel_type not in types:
            raise UserError(f"unknown relationship type {rel_type!r} in Neo4j database {client.database!r} (types "
                            f"there: {', '.join(sorted(types)[:20]) or 'none'}); pass your relationship type in {flag}")


def inspect_graph(client: Neo4jClient, spec: RegisterSpec) -> GraphFacts:
    """Every check of the request against the data; a :class:`UserError` names the first problem found."""
    check_names(client, spec)
    L = spec.label
    num_nodes = client.count_nodes(L)
    rels = client.read(f"MATCH (:`{L}`)-[r:`{spec.rel_type}`]->(:`{L}`) RETURN count(r) AS c")[0]["c"]
    kind, width, missing_x = check_features(client, L, spec.features, spec.missing_features, num_nodes)
    classes, missing_y = check_target(client, L, spec.target, spec.missing_target)
    split_counts = check_split(client, L, spec.split_prop) if spec.split_prop else {}
    return GraphFacts(num_nodes=num_nodes, num_relationships=int(rels), num_features=width, feature_kind=kind,
                      classes=classes, missing_features=missing_x, missing_target=missing_y, split_counts=split_counts)


def check_features(client: Neo4jClient, L: str, props: tuple[str, ...], missing_policy: str, num_nodes: int
                   ) -> tuple[str, int, int]:
    """(kind, width, nodes without features) of the feature properties ``props`` of label ``L``."""
    present = " AND ".join(f"n.`{p}` IS NOT NULL" for p in props)
    missing = client.read(f"MATCH (n:`{L}`) WHERE NOT ({present}) RETURN count(n) AS c")[0]["c"]
    if missing and missing_policy == "error":
        what = f"feature property {props[0]!r}" if len(props) == 1 else f"one of the feature properties {','.join(props)}"
        raise UserError(f"{missing} of {num_nodes} :{L} nodes lack {what}; set it on them, or pass "
                        "--missing_features zero to give them all-zero features")
    if missing == num_nodes:
        raise UserError(f"no :{L} node has the feature properties {','.join(props)}: check --features")
    kinds = {}
    for p in props:
        rec = client.read(f"MATCH (n:`{L}`) WHERE n.`{p}` IS NOT NULL RETURN collect(DISTINCT valueType(n.`{p}`)) AS t, "
                          f"head(collect(n.`{p}`)) AS one")[0]
        types, one = _types(rec["t"]), rec["one"]
        if isinstance(one, (bytes, bytearray)):
            kinds[p] = "bytes"
        elif types <= {"LIST"} | NUMERIC and "LIST" in types:
            kinds[p] = "list"
        elif types <= NUMERIC:
            kinds[p] = "scalar"
        else:
            raise UserError(f"feature property {p!r} of :{L} holds non-numeric values ({', '.join(sorted(rec['t']))}); "
                            "--features takes one LIST<FLOAT>/LIST<INTEGER> property, numeric scalar properties, "
                            "or packed float32 bytes")
    if len(props) > 1:
        if set(kinds.values()) != {"scalar"}:
            raise UserError(f"--features {','.join(props)}: several properties must each be a numeric scalar "
                            f"(found {', '.join(f'{p}: {k}' for p, k in kinds.items())}); or name one list property")
        return "scalars", len(props), int(missing)
    p, kind = props[0], kinds[props[0]]
    if kind == "scalar":
        return "scalars", 1, int(missing)
    rec = client.read(f"MATCH (n:`{L}`) WHERE n.`{p}` IS NOT NULL WITH n.`{p}` AS v "
                      "RETURN min(size(v)) AS lo, max(size(v)) AS hi, "
                      + ("0 AS bad" if kind == "bytes" else
                         f"sum(CASE WHEN any(e IN v WHERE NOT abs(e) <= {LARGEST_FLOAT}) THEN 1 ELSE 0 END) AS bad"))[0]
    lo, hi = int(rec["lo"]), int(rec["hi"])
    if lo != hi:
        counts = client.read(f"MATCH (n:`{L}`) WHERE n.`{p}` IS NOT NULL RETURN size(n.`{p}`) AS k, count(*) AS c "
                             "ORDER BY c DESC LIMIT 3")
        seen = ", ".join(f"{r['c']} nodes of length {r['k']}" for r in counts)
        raise UserError(f"feature property {p!r} of :{L} has values of unequal length ({lo} to {hi}{' bytes' if kind == 'bytes' else ''}; "
                        f"{seen}); give every node the same number of features")
    if rec["bad"]:
        raise UserError(f"feature property {p!r} of {rec['bad']} :{L} nodes holds NaN or infinite values; "
                        "replace them with finite numbers")
    if kind == "bytes":
        if lo % 4:
            raise UserError(f"feature property {p!r} of :{L} holds {lo} bytes per node, not float32 values "
                            "(a multiple of 4); store little-endian float32 rows or a LIST<FLOAT>")
        return "bytes", lo // 4, int(missing)
    if lo == 0:
        raise UserError(f"feature property {p!r} of :{L} holds empty lists; give every node at least one feature")
    return "list", lo, int(missing)


def check_target(client: Neo4jClient, L: str, t: str, missing_policy: str) -> tuple[list[Any], int]:
    """(sorted class vocabulary, nodes without target) of the target property ``t`` of label ``L``."""
    rec = client.read(f"MATCH (n:`{L}`) RETURN count(n) - count(n.`{t}`) AS missing, "
                      f"collect(DISTINCT valueType(n.`{t}`)) AS types")[0]
    missing, types = int(rec["missing"]), _types(rec["types"]) - {"NULL"}
    if missing and missing_policy == "error":
        raise UserError(f"{missing} :{L} nodes lack the target property {t!r}; set it on them, or pass "
                        "--missing_target unlabelled to leave them unlabelled (no split)")
    if not types:
        raise UserError(f"no :{L} node has the target property {t!r}: check --target")
    if not (types == {"STRING"} or types == {"INTEGER"}):
        raise UserError(f"target property {t!r} of :{L} holds {', '.join(sorted(types))} values; classes must be "
                        "all strings or all integers")
    vocab = sorted(r["v"] for r in client.read(f"MATCH (n:`{L}`) WHERE n.`{t}` IS NOT NULL RETURN DISTINCT n.`{t}` AS v"))
    if len(vocab) < 2:
        raise UserError(f"target property {t!r} of :{L} has only one class ({vocab[0]!r}); a classifier needs at "
                        "least two: check --target")
    return vocab, missing


def check_split(client: Neo4jClient, L: str, s: str) -> dict[str, int]:
    """Nodes per split of the split property ``s`` of label ``L`` (other values refused)."""
    rows = client.read(f"MATCH (n:`{L}`) RETURN n.`{s}` AS v, count(*) AS c")
    counts: dict[str, int] = {}
    unknown = []
    for r in rows:
        v = r["v"]
        if v is None:
            continue
        key = SPLIT_VALUES.get(v.lower()) if isinstance(v, str) else None
        if key is None:
            unknown.append((v, r["c"]))
        else:
            counts[key] = counts.get(key, 0) + int(r["c"])
    if unknown:
        shown = ", ".join(f"{v!r} ({c} nodes)" for v, c in sorted(unknown, key=lambda u: -u[1])[:5])
        raise UserError(f"split property {s!r} of :{L} has values other than train/val/test: {shown}; fix them, "
                        "or use --split random:TRAIN,VAL,TEST")
    if not counts.get("train"):
        raise UserError(f"split property {s!r} of :{L} marks no node 'train'; mark some, or use --split random:...")
    return counts
