"""What a registration asks for (``RegisterSpec``) and the namespaced names it stores under.

Why its own module: the command, the checks, the writers and the record all read the same
request; its fingerprint is what makes a re-run of the same registration a resume or a no-op
and a different request under the same name a refusal.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from src.core.errors import UsageError
from src.core.schema import DIRECTIONS, GraphSchema, default_label, validate_dataset_name, validate_identifier

METHOD = "register"  # DatasetRecord.method of a registered (not loaded) dataset
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
MISSING_FEATURES = ("error", "zero")
MISSING_TARGET = ("error", "unlabelled")


def registration_prefix(name: str) -> str:
    """``gnn_<name>_``: the prefix of a registration's own property names."""
    return f"gnn_{re.sub(r'[^A-Za-z0-9_]', '_', default_label(name))}_"


@dataclass(frozen=True)
class RandomSplit:
    """Seeded random split of the labelled nodes by fractions (stratified by class when asked)."""

    train: float
    val: float
    test: float

    @classmethod
    def parse(cls, text: str) -> RandomSplit:
        try:
            parts = [float(p) for p in text.split(",")]
        except ValueError:
            parts = []
        if len(parts) != 3 or any(p < 0 for p in parts) or not 0 < sum(parts) <= 1.0 + 1e-9:
            raise UsageError(f"--split random:{text}: give three fractions TRAIN,VAL,TEST >= 0 summing to at most 1, "
                             "e.g. random:0.6,0.2,0.2")
        return cls(*parts)


def check_split_and_policies(spec: Any) -> None:
    """The checks a homogeneous and a heterogeneous registration share: one split source, ``--stratify``
    only with a random split, the missing-value policies, a positive batch size."""
    if (spec.split_prop is None) == (spec.random_split is None):
        raise UsageError("--split needs one of PROP or random:TRAIN,VAL,TEST")
    if spec.stratify and spec.random_split is None:
        raise UsageError("--stratify applies to --split random:... only")
    if spec.missing_features not in MISSING_FEATURES or spec.missing_target not in MISSING_TARGET:
        raise UsageError("--missing_features must be error|zero and --missing_target error|unlabelled")
    if spec.batch_nodes <= 0:
        raise UsageError(f"--batch_nodes must be > 0 (got {spec.batch_nodes})")


@dataclass(frozen=True)
class RegisterSpec:
    """One registration request; every identifier validated here, before anything talks to Neo4j."""

    name: str
    label: str
    rel_type: str
    features: tuple[str, ...]
    target: str
    split_prop: str | None = None  # an existing property with train/val/test values ...
    random_split: RandomSplit | None = None  # ... or a seeded random split
    direction: str = "in"
    stratify: bool = False
    seed: int = 0
    missing_features: str = "error"
    missing_target: str = "error"
    batch_nodes: int = 5_000

    def __post_init__(self) -> None:
        validate_dataset_name(self.name, "--name")
        validate_identifier(self.label, "--node_label")
        validate_identifier(self.rel_type, "--rel_type")
        for prop in (*self.features, self.target, *([self.split_prop] if self.split_prop else [])):
            validate_identifier(prop, "property name")
        if not self.features:
            raise UsageError("--features names no property: give PROP or PROP,PROP,...")
        if len(set(self.features)) != len(self.features):
            raise UsageError(f"--features repeats a property: {','.join(self.features)}")
        if self.direction not in DIRECTIONS:
            raise UsageError(f"--direction must be one of {', '.join(DIRECTIONS)} (got {self.direction!r})")
        check_split_and_policies(self)
        self.schema  # noqa: B018 - the namespaced names must be valid identifiers too

    @classmethod
    def parse_split(cls, text: str) -> tuple[str | None, RandomSplit | None]:
        """``--split PROP`` or ``--split random:TRAIN,VAL,TEST``."""
        if text.startswith("random:"):
            return None, RandomSplit.parse(text[len("random:"):])
        return validate_identifier(text, "--split property"), None

    @property
    def prefix(self) -> str:
        """``gnn_<name>_``: the registration's own properties never collide with the user's or another's."""
        return registration_prefix(self.name)

    @property
    def schema(self) -> GraphSchema:
        p = self.prefix
        if len(p) + 5 > 64:
            raise UsageError(f"--name {self.name!r} is too long for its property names ({p}nbrs): use at most "
                             "54 characters")
        return GraphSchema(dataset=self.name, label=self.label, rel_type=self.rel_type, id_prop=f"{p}id",
                           x_prop=f"{p}x", y_prop=f"{p}y", split_prop=f"{p}split", adj_prop=f"{p}nbrs",
                           direction=self.direction)

    @property
    def fingerprint(self) -> str:
        """Hash of the request (not of the data): same request = resume or no-op; another = refusal."""
        req = {k: v for k, v in asdict(self).items() if k != "batch_nodes"}
        return hashlib.sha256(json.dumps(req, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def record_properties(self) -> dict:
        """What the record keeps of the request, beside the schema's names (for people and for export)."""
        s = self.schema
        return {"label": s.label, "rel_type": s.rel_type, "direction": s.direction, "id_prop": s.id_prop,
                "x_prop": s.x_prop, "y_prop": s.y_prop, "split_prop": s.split_prop, "adj_prop": s.adj_prop,
                "source": "neo4j", "method": METHOD, "fingerprint": self.fingerprint,
                "feature_properties": list(self.features), "target_property": self.target,
                "missing_features": self.missing_features, "missing_target": self.missing_target,
                "split_source": self.split_prop or "random:" + ",".join(
                    str(f) for f in (self.random_split.train, self.random_split.val, self.random_split.test)),
                "register_command": self.command()}

    def command(self) -> str:
        """The command that (re-)runs this registration, for hints."""
        split = self.split_prop or "random:" + ",".join(
            str(f) for f in (self.random_split.train, self.random_split.val, self.random_split.test))
        flags = [f"--name {self.name}", f"--node_label {self.label}", f"--rel_type {self.rel_type}",
                 f"--direction {self.direction}", f"--features {','.join(self.features)}", f"--target {self.target}",
                 f"--split {split}"]
        if self.stratify:
            flags.append("--stratify")
        if self.seed:
            flags.append(f"--seed {self.seed}")
        if self.missing_features != "error":
            flags.append(f"--missing_features {self.missing_features}")
        if self.missing_target != "error":
            flags.append(f"--missing_target {self.missing_target}")
        return "python loaders/register_graph.py " + " ".join(flags)
