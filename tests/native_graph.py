"""Graphs created the Neo4j way for the registration and write-back tests: plain Cypher through the
driver (float-list features, string categories, no id property, extra user properties), never
through the project's loader."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from src.client import Neo4jClient

CATEGORIES = ["Theory", "Case_Based", "Genetic_Algorithms", "Neural_Networks", "Probabilistic_Methods",
              "Reinforcement_Learning", "Rule_Learning"]  # not sorted: the vocabulary must sort them


def create_native_graph(client: Neo4jClient, label: str, rel_type: str, x: np.ndarray, y: np.ndarray,
                        edges: np.ndarray, *, batch: int = 2000) -> list[str]:
    """Nodes ``(:label {features: [..], category: "...", title, year})`` and one ``rel_type`` relationship
    (with a ``weight``) per column of ``edges``; returns the nodes' elementIds in row order."""
    eids: list[str] = []
    for lo in range(0, len(y), batch):
        rows = [{"f": x[i].astype(float).tolist(), "c": CATEGORIES[int(y[i]) % len(CATEGORIES)],
                 "t": f"paper {i}", "yr": 1990 + i % 20} for i in range(lo, min(len(y), lo + batch))]
        recs = client.write(f"UNWIND $rows AS r CREATE (n:`{label}` {{features: r.f, category: r.c, title: r.t, "
                            "year: r.yr}) RETURN elementId(n) AS e", rows=rows)
        eids += [r["e"] for r in recs]
    for lo in range(0, edges.shape[1], 5 * batch):
        rows = [{"a": eids[int(u)], "b": eids[int(v)], "w": float(k % 7) / 7}
                for k, (u, v) in enumerate(edges[:, lo:lo + 5 * batch].T, start=lo)]
        client.write(f"UNWIND $rows AS r MATCH (a) WHERE elementId(a) = r.a MATCH (b) WHERE elementId(b) = r.b "
                     f"CREATE (a)-[:`{rel_type}` {{weight: r.w}}]->(b)", rows=rows)
    return eids


def one_direction(edge_index: np.ndarray) -> np.ndarray:
    """One column per undirected pair (u < v) of a symmetric edge list, as a user would store citations."""
    keep = edge_index[0] < edge_index[1]
    return edge_index[:, keep]


def user_data_checksum(client: Neo4jClient, label: str, rel_type: str, own_prefix: str = "gnn_") -> str:
    """Hash of every node of ``label`` (labels, properties but the registration's ``gnn_*``) and every
    ``rel_type`` relationship (ends, type, properties)."""
    nodes = client.read(f"MATCH (n:`{label}`) RETURN elementId(n) AS e, labels(n) AS l, properties(n) AS p ORDER BY e")
    rels = client.read(f"MATCH (a)-[r:`{rel_type}`]->(b) RETURN elementId(r) AS e, elementId(a) AS a, "
                       "elementId(b) AS b, type(r) AS t, properties(r) AS p ORDER BY e")
    h = hashlib.sha256()
    for r in nodes:
        props = {k: v for k, v in r["p"].items() if not k.startswith(own_prefix)}
        h.update(json.dumps([r["e"], sorted(r["l"]), props], sort_keys=True).encode())
    for r in rels:
        h.update(json.dumps([r["e"], r["a"], r["b"], r["t"], r["p"]], sort_keys=True).encode())
    return f"{len(nodes)}:{len(rels)}:{h.hexdigest()}"


def delete_graph(client: Neo4jClient, label: str) -> None:
    client.run_autocommit(f"MATCH (n:`{label}`) CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 10000 ROWS")
