"""How one dataset is named in a graph database: label, relationship type, property names.

Shared by every loader and every database backend so all agree on every name. All names are
validated identifiers (:func:`validate_identifier`), so the Cypher built from them is safe to format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from src.core.errors import UsageError

DATASET_LABEL = "GnnDataset"  # one metadata node per loaded dataset

SPLITS = ("train", "val", "test")

# Which relationships make u a neighbour of v (whose features v aggregates): the loader's graphs
# store ``(u)-[:T]->(v)`` ("in", PyG's source_to_target); a registered graph may say "out" or both.
DIRECTIONS = ("in", "out", "undirected")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def validate_identifier(name: str, kind: str = "identifier") -> str:
    """Return ``name`` if it is safe to put into Cypher text, else raise :class:`UsageError`.

    Labels, relationship types and property names cannot be query parameters, so they are
    restricted to ``[A-Za-z_][A-Za-z0-9_]*`` (max 64 chars) and still backtick-quoted by callers.
    """
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise UsageError(
            f"invalid {kind} {name!r}: use 1-64 letters, digits or underscores, not starting with a digit"
        )
    return name

def rel_arrow(rel_type: str, leftward: bool) -> str:
    """The relationship part of a Cypher pattern: ``<-[:`T`]-`` when ``leftward``, else ``-[:`T`]->`` (``rel_type``
    validated by the caller)."""
    return f"<-[:`{rel_type}`]-" if leftward else f"-[:`{rel_type}`]->"


def validate_dataset_name(name: str, flag: str = "dataset name") -> str:
    """A dataset's name travels as a query value, but quotes, backticks and spaces in it are
    mistakes (or injection attempts) better refused up front with a clear line."""
    if not isinstance(name, str) or not _DATASET_NAME.match(name):
        raise UsageError(f"invalid {flag} {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return name

def default_label(dataset: str) -> str:
    """``ogbn-arxiv`` -> ``ogbn_arxiv``: the dataset name as a Neo4j label."""
    label = re.sub(r"\W", "_", dataset)
    return label if re.match(r"[A-Za-z_]", label) else f"g_{label}"

@dataclass(frozen=True)
class GraphSchema:
    """Label, relationship type and property names of one dataset in Neo4j."""

    dataset: str
    label: str
    rel_type: str
    id_prop: str = "id"
    x_prop: str = "x"
    y_prop: str = "y"
    split_prop: str = "split"
    # In-neighbour ids of the node as one packed little-endian int64 ``bytes`` value, in source edge
    # order (as CSRGraph): gnn.sampleHop(s) read it instead of walking the relationship chain.
    adj_prop: str = "nbrs"
    direction: str = "in"

    def __post_init__(self) -> None:
        validate_dataset_name(self.dataset)
        if self.direction not in DIRECTIONS:
            raise UsageError(f"invalid direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}")
        validate_identifier(self.label, "label")
        validate_identifier(self.rel_type, "relationship type")
        for prop in (self.id_prop, self.x_prop, self.y_prop, self.split_prop, self.adj_prop):
            validate_identifier(prop, "property name")

    @classmethod
    def for_dataset(cls, dataset: str, label: str | None = None, rel_type: str | None = None) -> "GraphSchema":
        """Names derived from ``dataset`` unless given; a name too long to derive them is one line."""
        validate_dataset_name(dataset)
        derived = {"label": label or default_label(dataset)}
        derived["rel_type"] = rel_type or f"{derived['label']}_EDGE"
        for kind, flag, given in (("label", "--node_label", label), ("rel_type", "--rel_type", rel_type)):
            if given is None and not _IDENTIFIER.match(derived[kind]):
                raise UsageError(f"dataset name {dataset!r} ({len(dataset)} characters) is too long for the Neo4j "
                                 f"{kind.replace('_', ' ')} derived from it (at most 64 characters): "
                                 f"pass a shorter --name, or {flag}")
        return cls(dataset=dataset, label=derived["label"], rel_type=derived["rel_type"])

    def neighbours_of(self, node: str, nbr: str, rel: str = "") -> str:
        """The pattern ``nbr`` is a neighbour of ``node`` in, written from ``node`` (``(v)<-[:T]-(u)`` for "in");
        ``rel`` names the relationship variable (none by default)."""
        left, right = {"in": ("<-", "-"), "out": ("-", "->"), "undirected": ("-", "-")}[self.direction]
        return f"({node}){left}[{rel}:`{self.rel_type}`]{right}({nbr})"

    def neighbour_of(self, nbr: str, node: str) -> str:
        """The same pattern written from the neighbour's side (``(u)-[:T]->(v)`` for "in")."""
        left, right = {"in": ("-", "->"), "out": ("<-", "-"), "undirected": ("-", "-")}[self.direction]
        return f"({nbr}){left}[:`{self.rel_type}`]{right}({node})"

    @property
    def constraint_name(self) -> str:
        return f"{self.label}_{self.id_prop}_unique"
