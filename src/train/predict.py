"""Inference with a finished run's checkpoint, over the run's own backend; the writers are plugged in.

Why here and database-free: the model, its checkpoint and the backend contract are the
trainer's; where predictions go (Neo4j node properties, a file, Ladybug) is a
:class:`PredictionWriter`. Batches are fixed chunks of the sorted node ids, each written once:
a writer that remembers its finished chunks (src/neo4jdb/write_back.py) makes a killed
write-back resume where it stopped, and since a batch's samples depend only on its seed ids
and the seed, a resumed run predicts what an uninterrupted one would.
"""
from __future__ import annotations

import json
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn
from torch_geometric.data import HeteroData
from tqdm import tqdm

from src.backends.base import Backend
from src.backends.registry import spec as backend_spec
from src.core.errors import ArgumentParser, UserError
from src.train.checkpoint import CHECKPOINT_FILE, load_checkpoint, mix_seeds, model_identity
from src.train.cli import add_training_args, parse_training_config
from src.train.config import TrainConfig
from src.train.model import batch_logits, model_from_identity


@dataclass
class Prediction:
    """One batch: node ids, predicted class index, class probabilities, final-layer embedding."""

    ids: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None = None
    embedding: np.ndarray | None = None


class PredictionWriter(Protocol):
    def done(self) -> set[int]: ...  # chunk indices already written (resume skips them)

    def write(self, idx: int, p: Prediction) -> None: ...

    def finish(self) -> str: ...  # verify, mark complete; a line for the summary


@dataclass(frozen=True)
class RunInfo:
    """What a run's rank-0 JSONL log says about it."""

    name: str
    backend: str
    config: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def test_acc(self, epoch: int) -> float | None:
        return next((e.get("test_acc") for e in self.epochs if e.get("epoch") == epoch), None)


def read_run(log_dir: str, run_name: str) -> RunInfo:
    """The run's backend, config (every flag) and epoch events, from ``<log_dir>/<run>/rank0.jsonl``."""
    path = Path(log_dir) / run_name / "rank0.jsonl"
    try:
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"no run {run_name!r}: {path} does not exist; pass the --run_name (and --log_dir) "
                        "of a finished training run") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"run log {path} is unreadable ({exc}); pass another --run_name") from None
    starts = [e for e in events if e.get("event") == "run_start"]
    if not starts:
        raise UserError(f"run log {path} has no run_start event; pass the --run_name of a finished training run")
    return RunInfo(name=run_name, backend=str(starts[-1]["backend"]), config=dict(starts[-1]["config"]),
                   epochs=[e for e in events if e.get("event") == "epoch"])


def run_backend(info: RunInfo, overrides: dict[str, Any] | None = None
                ) -> tuple[AbstractContextManager[Backend], TrainConfig, Any]:
    """The run's backend opened with the run's flags (one process, no resume), its config and the args."""
    wing = backend_spec(info.backend).load()
    parser = ArgumentParser()
    add_training_args(parser)
    wing.add_args(parser)
    args = parser.parse_args([])
    for key, value in {**info.config, **(overrides or {})}.items():
        if hasattr(args, key):
            setattr(args, key, ",".join(map(str, value)) if key == "fanouts" and isinstance(value, list) else value)
    args.num_nodes, args.node_rank, args.resume = 1, 0, False
    if hasattr(args, "full_graph"):
        args.full_graph = True  # one process predicts: the whole graph, not one partition
    wing.check_args(args)
    cfg = parse_training_config(args, env={})
    return wing.open_backend(args, cfg), cfg, args


def load_model(cfg: TrainConfig, backend: Backend) -> tuple[nn.Module, int]:
    """A node-classification run's last checkpoint in eval mode, checked against the backend's dataset; and its
    epoch (link runs: src/train/link_predict.py)."""
    identity = model_identity(cfg, backend.num_features, backend.num_classes)
    path = Path(cfg.checkpoint_dir) / str(cfg.run_name) / CHECKPOINT_FILE
    state = load_checkpoint(path, identity)
    if state is None:
        raise UserError(f"run {cfg.run_name!r} has no checkpoint at {path}; train it first (or pass its --checkpoint_dir)")
    model = backend.make_model(cfg) or model_from_identity(identity, cfg.dropout)  # typed: the backend's
    model.load_state_dict(state["model"])
    return model.eval(), int(state["epoch"])


def pending_chunks(n: int, size: int, writer: Any) -> tuple[list[tuple[int, int]], set[int], int]:
    """The ``[lo, hi)`` chunks of ``size`` over ``n`` items, the indices ``writer`` has written already, and
    how many items those hold (a resumed write-back skips them)."""
    chunks = [(lo, min(lo + size, n)) for lo in range(0, n, size)]
    done = writer.done()
    return chunks, done, sum(chunks[k][1] - chunks[k][0] for k in done if k < len(chunks))


def write_pending(n: int, size: int, writer: Any, write_chunk: Callable[[int, int, int], None], *, unit: str,
                  desc: str, progress: bool) -> tuple[int, int]:
    """``write_chunk(c, lo, hi)`` for each chunk ``writer`` has not written yet, under a progress bar that
    starts at the skipped items. Returns (items written now, items skipped as already written)."""
    chunks, done, skipped = pending_chunks(n, size, writer)
    written = 0
    with tqdm(total=n, initial=skipped, unit=unit, unit_scale=True, desc=desc, disable=not progress) as bar:
        for c, (lo, hi) in enumerate(chunks):
            if c not in done:
                write_chunk(c, lo, hi)
                written += hi - lo
                bar.update(hi - lo)
    return written, skipped


@torch.no_grad()
def predict(model: nn.Module, backend: Backend, ids: np.ndarray, writer: PredictionWriter, *, seed: int,
            proba: bool, embedding: bool, progress: bool = True) -> tuple[int, int]:
    """Predict ``ids`` (sorted) in chunks of the backend's batch size, skipping chunks the writer has.

    The embedding is the input of the last layer (the final hidden representation). Returns
    (nodes predicted now, nodes skipped as already written).
    """
    chunks, done, skipped = pending_chunks(len(ids), backend.batch_size, writer)
    todo = [k for k in range(len(chunks)) if k not in done]
    if not todo:
        return 0, skipped
    seeds = torch.from_numpy(np.concatenate([ids[slice(*chunks[k])] for k in todo]).astype(np.int64))
    model.keep_last_hidden = embedding  # the zoo's forward keeps the last layer's input (src/train/model.py)
    predicted = 0
    try:
        with tqdm(total=len(ids), initial=skipped, unit="node", unit_scale=True, desc="predict",
                  disable=not progress) as bar:
            batches = iter(backend.make_loader(seeds, shuffle=False, seed=seed))
            for k in todo:
                batch = next(batches)
                n = int(batch.batch_size)
                logits = batch_logits(model, batch)
                got = seed_ids(batch, n)
                if not np.array_equal(got, ids[slice(*chunks[k])]):
                    raise RuntimeError("the loader's batches do not follow the seed order")
                writer.write(k, Prediction(
                    ids=got, pred=logits.argmax(dim=-1).numpy(),
                    proba=torch.softmax(logits, dim=-1).numpy() if proba else None,
                    embedding=model.last_hidden[:n].numpy() if embedding else None))
                predicted += n
                bar.update(n)
    finally:
        model.keep_last_hidden, model.last_hidden = False, None
    return predicted, skipped


def seed_ids(batch: Any, n: int) -> np.ndarray:
    """The ids of a batch's ``n`` seeds (of the target type in a heterogeneous batch)."""
    if isinstance(batch, HeteroData):
        return next(batch[t].n_id[:n].numpy() for t in batch.node_types if "batch_size" in batch[t])
    return batch.n_id[:n].numpy()


def predict_seed(cfg: TrainConfig) -> int:
    """The sampling seed of a run's predictions (fixed: re-runs and resumes sample the same)."""
    return mix_seeds(cfg.seed, 4)


class FileWriter:
    """Predictions into one ``.npz`` (``ids``, ``pred``, optional ``proba``, ``embedding``, ``classes``),
    written atomically at the end: for backends without node properties to write to."""

    def __init__(self, path: Path, classes: list[Any] | None = None) -> None:
        self.path, self.classes = Path(path), classes
        self.parts: list[Prediction] = []

    def done(self) -> set[int]:
        return set()

    def write(self, idx: int, p: Prediction) -> None:
        self.parts.append(p)

    def arrays(self) -> dict[str, np.ndarray]:
        cat = lambda key: np.concatenate([getattr(p, key) for p in self.parts])  # noqa: E731
        out = {"ids": cat("ids"), "pred": cat("pred")}
        for key in ("proba", "embedding"):
            if self.parts and getattr(self.parts[0], key) is not None:
                out[key] = cat(key)
        if self.classes:
            out["classes"] = np.asarray(self.classes)
        return out

    def finish(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        arrays = self.arrays() if self.parts else {"ids": np.zeros(0, np.int64), "pred": np.zeros(0, np.int64)}
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path)
        return f"wrote {len(arrays['ids'])} predictions to {self.path}"
