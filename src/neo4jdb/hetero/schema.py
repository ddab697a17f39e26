"""Names of a heterogeneous dataset in Neo4j and its ``(:GnnDataset {hetero: true})`` record.

Why: every reader (sampler, feature store, backend) must map node types to labels and edge types to
relationship types the same way the loader wrote them. A node type ``t`` of dataset ``d`` is the
label ``<d>_<t>`` (``default_label``), a relationship ``r`` the type ``<d>_<r>``, so two datasets
never share labels or types; ids are dense per type (property ``id``), features ``x`` (float32-le
bytes) on featured types, ``y``/``split`` on labelled types. A graph registered in place
(src/neo4jdb/register/hetero.py) keeps the user's labels and types and namespaced property names,
which the record names (``id_prop``, ``x_prop``, ``y_prop``, ``split_prop``). The record keeps the node and
relationship types as JSON (``node_types``, ``rel_types``); it has no ``label``/``rel_type``, so the
homogeneous readers and the plugin's live-adjacency hook skip it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from src.core.errors import UserError
from src.core.hetero_fanouts import EdgeType, reverse_edge_type
from src.core.schema import DATASET_LABEL, GraphSchema, default_label, validate_dataset_name, validate_identifier


@dataclass(frozen=True)
class NodeTypeSpec:
    name: str
    label: str
    num_nodes: int
    num_features: int
    labelled: bool


@dataclass(frozen=True)
class RelTypeSpec:
    src: str
    rel: str
    dst: str
    rel_type: str
    num_edges: int
    reverse: bool = False  # a rev_<rel> type: the relationships of rel_type walked from dst back to src

    @property
    def edge_type(self) -> EdgeType:
        return (self.src, self.rel, self.dst)


@dataclass(frozen=True)
class HeteroSchema:
    """Node and relationship types of one dataset with their Neo4j names."""

    dataset: str
    node_types: tuple[NodeTypeSpec, ...]
    rel_types: tuple[RelTypeSpec, ...]
    target_type: str
    num_classes: int
    id_prop: str = "id"
    x_prop: str = "x"
    y_prop: str = "y"
    split_prop: str = "split"

    def __post_init__(self) -> None:
        validate_dataset_name(self.dataset)
        names = {t.name for t in self.node_types}
        for t in self.node_types:
            validate_identifier(t.label, "label")
        for prop in (self.id_prop, self.x_prop, self.y_prop, self.split_prop):
            validate_identifier(prop, "property name")
        for r in self.rel_types:
            validate_identifier(r.rel_type, "relationship type")
            bad = [t for t in (r.src, r.dst) if t not in names]
            if bad:
                raise UserError(f"dataset {self.dataset!r}: relationship type {r.rel} connects {r.src} -> {r.dst}, "
                                f"but {', '.join(bad)} is not a declared node type ({', '.join(sorted(names))})")

    @classmethod
    def for_dataset(cls, ds: Any) -> HeteroSchema:
        """Default names for a :class:`~src.data.hetero.HeteroGraphDataset`."""
        prefix = default_label(ds.name)
        nodes, rels = ds.describe()
        return cls(ds.name, tuple(NodeTypeSpec(n["name"], f"{prefix}_{n['name']}", n["num_nodes"], n["num_features"],
                                               n["labelled"]) for n in nodes),
                   tuple(RelTypeSpec(r["src"], r["rel"], r["dst"], f"{prefix}_{r['rel']}", r["num_edges"]) for r in rels),
                   ds.target_type, ds.num_classes)

    def node(self, name: str) -> NodeTypeSpec:
        for t in self.node_types:
            if t.name == name:
                return t
        raise UserError(f"dataset {self.dataset!r} has no node type {name!r}; node types: "
                        f"{', '.join(t.name for t in self.node_types)}")

    def type_schema(self, node_type: str) -> GraphSchema:
        """The names of one node type's rows as the homogeneous readers take them (one label, dense ids)."""
        return GraphSchema(dataset=self.dataset, label=self.node(node_type).label, rel_type=self.rel_types[0].rel_type,
                           id_prop=self.id_prop, x_prop=self.x_prop, y_prop=self.y_prop)

    def with_reverse(self) -> HeteroSchema:
        """Every stored relationship type also walked backwards as ``(dst, rev_<rel>, src)`` (nothing is written:
        the same relationships, read from their start nodes' side), after the stored types."""
        rev = tuple(RelTypeSpec(*reverse_edge_type(r.edge_type), rel_type=r.rel_type, num_edges=r.num_edges,
                                reverse=True) for r in self.rel_types if not r.reverse)
        return dataclasses.replace(self, rel_types=self.rel_types + rev)

    @property
    def edge_types(self) -> list[EdgeType]:
        return [r.edge_type for r in self.rel_types]

    def rel(self, edge_type: EdgeType) -> RelTypeSpec:
        return next(r for r in self.rel_types if r.edge_type == edge_type)

    def record_properties(self) -> dict[str, Any]:
        return {"hetero": True, "target_type": self.target_type, "num_classes": self.num_classes,
                "node_types": json.dumps([t.__dict__ for t in self.node_types]),
                "rel_types": json.dumps([{k: v for k, v in r.__dict__.items() if k != "reverse"}
                                         for r in self.rel_types if not r.reverse]),
                "num_nodes": sum(t.num_nodes for t in self.node_types),
                "num_edges": sum(r.num_edges for r in self.rel_types), "id_prop": self.id_prop,
                "x_prop": self.x_prop, "y_prop": self.y_prop, "split_prop": self.split_prop}

    @classmethod
    def from_record(cls, props: Mapping[str, Any]) -> HeteroSchema:
        if not props.get("hetero"):
            raise UserError(f"dataset {props.get('name')!r} is not heterogeneous; train it with the homogeneous "
                            "scripts (no --target_type)")
        return cls(str(props["name"]), tuple(NodeTypeSpec(**t) for t in json.loads(props["node_types"])),
                   tuple(RelTypeSpec(**r) for r in json.loads(props["rel_types"])), str(props["target_type"]),
                   int(props["num_classes"]), **{k: str(props[k]) for k in ("id_prop", "x_prop", "y_prop", "split_prop")
                                                 if props.get(k)})


def hetero_record(client: Any, name: str) -> dict[str, Any] | None:
    recs = client.read(f"MATCH (d:`{DATASET_LABEL}` {{name: $name}}) RETURN properties(d) AS p", name=name)
    return dict(recs[0]["p"]) if recs else None


def require_hetero(client: Any, name: str) -> HeteroSchema:
    """The complete hetero dataset ``name``, or one line saying how to load it."""
    props = hetero_record(client, name)
    if props is None or not props.get("complete"):
        state = "is not loaded" if props is None else "was not loaded completely"
        raise UserError(f"dataset {name!r} {state} in Neo4j database {client.database!r}; load it with "
                        f"`python loaders/load_into_neo4j.py --dataset {name}`")
    return HeteroSchema.from_record(props)
