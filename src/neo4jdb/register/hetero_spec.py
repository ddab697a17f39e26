"""What a heterogeneous registration asks for (``HeteroRegisterSpec``): several labels, several types.

Why its own request: a graph with several labels and relationship types (``--node_types
Paper:features,Author,Venue --relationships WRITES:Author->Paper,CITES:Paper->Paper``) becomes a
heterogeneous dataset in place. Node type = the label; a relationship entry ``[NAME=]TYPE:Src->Dst``
is the edge type ``(Src, NAME, Dst)`` (NAME defaults to TYPE; a type used between several label pairs
needs a NAME per pair). The registration stores only its own namespaced properties
(``gnn_<name>_id/_x/_y/_split``, as the homogeneous one) and the ``hetero`` record that
src/neo4jdb/hetero/schema.py reads; the fingerprint makes a re-run a resume or a no-op.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from src.core.errors import UsageError
from src.core.schema import validate_dataset_name, validate_identifier
from src.neo4jdb.register.spec import RandomSplit, check_split_and_policies, registration_prefix

_REL = re.compile(r"^(?:(?P<name>[^=:]+)=)?(?P<type>[^:]+):(?P<src>[^-]+)->(?P<dst>.+)$")


@dataclass(frozen=True)
class NodeTypeRequest:
    label: str
    features: tuple[str, ...] = ()  # empty: featureless


@dataclass(frozen=True)
class RelRequest:
    name: str
    rel_type: str
    src: str
    dst: str


def parse_node_types(text: str) -> tuple[NodeTypeRequest, ...]:
    """``Paper:features,Author,Venue:a+b`` (``+`` joins numeric scalar properties)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        label, _, feats = part.partition(":")
        out.append(NodeTypeRequest(label.strip(), tuple(f.strip() for f in feats.split("+") if f.strip())))
    return tuple(out)


def parse_relationships(text: str) -> tuple[RelRequest, ...]:
    """``WRITES:Author->Paper,cited=CITES:Paper->Paper``."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = _REL.match(part)
        if not m:
            raise UsageError(f"--relationships entry {part!r}: write [NAME=]TYPE:SourceLabel->DestinationLabel, "
                             "e.g. WRITES:Author->Paper")
        rel_type = m["type"].strip()
        out.append(RelRequest((m["name"] or rel_type).strip(), rel_type, m["src"].strip(), m["dst"].strip()))
    return tuple(out)


@dataclass(frozen=True)
class HeteroRegisterSpec:
    """One heterogeneous registration request; every identifier validated before anything talks to Neo4j."""

    name: str
    node_types: tuple[NodeTypeRequest, ...]
    relationships: tuple[RelRequest, ...]
    target_type: str
    target: str
    split_prop: str | None = None
    random_split: RandomSplit | None = None
    stratify: bool = False
    seed: int = 0
    missing_features: str = "error"
    missing_target: str = "error"
    batch_nodes: int = 5_000

    def __post_init__(self) -> None:
        validate_dataset_name(self.name, "--name")
        validate_identifier(self.target, "--target")
        if self.split_prop:
            validate_identifier(self.split_prop, "--split property")
        check_split_and_policies(self)
        if len(self.prefix) + 5 > 64:
            raise UsageError(f"--name {self.name!r} is too long for its property names ({self.prefix}split): use "
                             "at most 54 characters")
        labels = [t.label for t in self.node_types]
        if not labels:
            raise UsageError("--node_types names no label: give LABEL[:FEATURES],LABEL,...")
        if len(set(labels)) != len(labels):
            raise UsageError(f"--node_types repeats a label: {','.join(labels)}")
        for t in self.node_types:
            validate_identifier(t.label, "--node_types label")
            for p in t.features:
                validate_identifier(p, f"feature property of {t.label}")
            if len(set(t.features)) != len(t.features):
                raise UsageError(f"--node_types {t.label}: repeats a feature property ({'+'.join(t.features)})")
        if not self.relationships:
            raise UsageError("--relationships names no relationship: give TYPE:SourceLabel->DestinationLabel,...")
        names = [r.name for r in self.relationships]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise UsageError(f"--relationships names {', '.join(dup)} more than once: a type between several label "
                             "pairs needs a NAME per pair (NAME=TYPE:Src->Dst)")
        for r in self.relationships:
            validate_identifier(r.name, "--relationships name")
            validate_identifier(r.rel_type, "--relationships type")
            bad = [x for x in (r.src, r.dst) if x not in labels]
            if bad:
                raise UsageError(f"--relationships {r.rel_type}:{r.src}->{r.dst}: {', '.join(bad)} is not in "
                                 f"--node_types ({', '.join(labels)}); declare it there")
        if self.target_type not in labels:
            raise UsageError(f"--target_type {self.target_type!r} is not in --node_types ({', '.join(labels)})")

    @property
    def prefix(self) -> str:
        return registration_prefix(self.name)

    @property
    def props(self) -> dict[str, str]:
        """The registration's own property names (``id_prop``, ``x_prop``, ``y_prop``, ``split_prop``)."""
        p = self.prefix
        return {"id_prop": f"{p}id", "x_prop": f"{p}x", "y_prop": f"{p}y", "split_prop": f"{p}split"}

    def node(self, label: str) -> NodeTypeRequest:
        return next(t for t in self.node_types if t.label == label)

    @property
    def fingerprint(self) -> str:
        req = {k: v for k, v in asdict(self).items() if k != "batch_nodes"}
        return hashlib.sha256(json.dumps(req, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def split_text(self) -> str:
        return self.split_prop or "random:" + ",".join(
            str(f) for f in (self.random_split.train, self.random_split.val, self.random_split.test))

    def command(self) -> str:
        """The command that (re-)runs this registration, for hints and the record."""
        nodes = ",".join(t.label + (":" + "+".join(t.features) if t.features else "") for t in self.node_types)
        rels = ",".join((f"{r.name}=" if r.name != r.rel_type else "") + f"{r.rel_type}:{r.src}->{r.dst}"
                        for r in self.relationships)
        flags = [f"--name {self.name}", f"--node_types {nodes}", f"--relationships {rels}",
                 f"--target_type {self.target_type}", f"--target {self.target}", f"--split {self.split_text()}"]
        if self.stratify:
            flags.append("--stratify")
        if self.seed:
            flags.append(f"--seed {self.seed}")
        if self.missing_features != "error":
            flags.append(f"--missing_features {self.missing_features}")
        if self.missing_target != "error":
            flags.append(f"--missing_target {self.missing_target}")
        return "python loaders/register_graph.py " + " ".join(flags)
