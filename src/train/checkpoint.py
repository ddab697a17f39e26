"""Checkpoints and random streams: what lets a stopped run continue exactly where it was.

Rank 0 writes one file per run after every epoch (model, optimizer, every rank's RNG states and
bookkeeping); ``--resume`` reads it back, checks it was written for the same model, and each
rank continues its own streams. Files load with ``torch.load(weights_only=True)``: no pickles.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from src.core.errors import UserError, first_line
from src.train import distributed
from src.train.config import TrainConfig
from src.train.checkpoint_checks import validate_checkpoint
from src.train.model import model_norm

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"  # the weights of the epoch with the best validation metric, beside the last epoch's
_IDENTITY_KEYS = ("dataset", "num_features", "num_classes", "hidden_channels", "num_layers", "normalize_features",
                  "model", "heads", "task", "decoder", "norm", "add_reverse")
# what checkpoints written before a key existed meant (before "norm", GIN had no batch norm)
_IDENTITY_DEFAULTS = {"normalize_features": "none", "model": "sage", "heads": 1, "task": "node", "decoder": None,
                      "norm": None, "add_reverse": False}


@dataclass
class Progress:
    """Run-level bookkeeping that must survive a resume for the summary (and early stopping) to be right.

    The best epoch is the one with the highest validation ``--metric``; the ``*_acc`` fields are the
    accuracies of that epoch (checkpoints from before ``--metric`` existed selected by accuracy).
    """

    best_val_acc: float | None = None
    test_acc_at_best_val: float | None = None
    best_epoch: int | None = None
    epoch_times: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    peak_neo4j_rss_mb: float | None = None
    best_val_metric: float | None = None
    test_metric_at_best_val: float | None = None
    evals_since_best: int = 0
    stopped_early: bool = False

    def record_eval(self, epoch: int, record: dict[str, Any], patience: int = 0) -> bool:
        """Take an evaluated epoch's ``val_metric``/``test_metric``; True if it is the best so far."""
        val = record.get("val_metric")
        if self.best_val_metric is None and self.best_val_acc is not None and record.get("metric") == "accuracy":
            self.best_val_metric, self.test_metric_at_best_val = self.best_val_acc, self.test_acc_at_best_val
        improved = val is not None and (self.best_val_metric is None or val > self.best_val_metric)
        if improved:
            self.best_val_metric, self.test_metric_at_best_val = val, record.get("test_metric")
            self.best_val_acc, self.test_acc_at_best_val = record.get("val_acc"), record.get("test_acc")
            self.best_epoch, self.evals_since_best = epoch, 0
        else:
            self.evals_since_best += 1
        self.stopped_early = bool(patience) and self.evals_since_best >= patience
        return improved

def model_identity(cfg: TrainConfig, num_features: int, num_classes: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed or predicted with (``cfg`` with its modes resolved)."""
    return {"dataset": cfg.dataset, "num_features": int(num_features), "num_classes": int(num_classes),
            "hidden_channels": cfg.hidden_channels, "num_layers": cfg.num_layers,
            "normalize_features": cfg.normalize_features, "model": cfg.model, "heads": cfg.heads,
            "task": cfg.task, "decoder": cfg.decoder if cfg.task == "link" else None,
            "norm": None if cfg.target_type else model_norm(cfg.model),  # typed models (hetero_model.py): none
            **({"target_type": cfg.target_type, "featureless": cfg.featureless} if cfg.target_type else {}),
            "add_reverse": cfg.add_reverse}


def mix_seeds(*words: int) -> int:
    """A well-spread 32-bit seed derived from integers (e.g. base seed, epoch, rank)."""
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0])

def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

def _rng_state() -> dict[str, Any]:
    """This process's RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }

def restore_rank_state(state: dict[str, Any], rank: int, world: int) -> Progress:
    """Each rank continues its own RNG streams and bookkeeping (epoch times, peaks).

    With a different world size the ranks do not map: RNGs are reseeded per (epoch, rank) and
    rank 0's bookkeeping is taken (best-val fields are the same on every rank anyway).
    """
    ranks = state["ranks"]
    if len(ranks) != world:
        log.warning("checkpoint was written by %d ranks, this job has %d: RNG streams are reseeded",
                    len(ranks), world)
        seed_all(mix_seeds(int(state["epoch"]), rank, 4))
        return Progress(**ranks[0]["progress"])
    mine = ranks[rank]
    _set_rng_state(mine["rng"])
    return Progress(**mine["progress"])

def _set_rng_state(mine: dict[str, Any]) -> None:
    torch.set_rng_state(mine["torch"])
    np_state = mine["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = mine["python"]
    random.setstate((version, tuple(internal), gauss))

def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                     identity: dict[str, Any], progress: Progress) -> None:
    """Rank 0 writes everything needed to continue after ``epoch``, atomically (tmp + replace)."""
    ranks = distributed.gather_objects({"rng": _rng_state(), "progress": dataclasses.asdict(progress)})
    if distributed.rank() != 0:
        return
    _write_atomically(path, {
        "epoch": epoch, "identity": identity, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "ranks": ranks,
    })

def save_best(path: Path, model: nn.Module, epoch: int, identity: dict[str, Any], record: dict[str, Any]) -> None:
    """Rank 0 keeps the best epoch's weights (for predict.py and cross-backend evaluation), atomically."""
    if distributed.rank() != 0:
        return
    metrics = {k: v for k, v in record.items() if k.startswith(("val_", "test_")) or k == "metric"}
    _write_atomically(path, {"epoch": epoch, "identity": identity, "model": model.state_dict(), "metrics": metrics})


def _write_atomically(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as RuntimeError (inline_container)
        tmp.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc, 120)
        kept = f"the checkpoint of the last good epoch stays in {path}" if path.exists() else "no checkpoint was kept"
        raise UserError(f"cannot write checkpoint {path} after epoch {state.get('epoch')} ({reason}); {kept}: "
                        "free space in (or fix) --checkpoint_dir, then --resume") from None

def load_checkpoint(path: Path, identity: dict[str, Any], model: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any] | None:
    """Rank 0 reads and checks the checkpoint (against ``model``/``optimizer`` when given), every
    rank gets it (or the same one-line error)."""
    payload: dict[str, Any] | str | None = None
    if distributed.rank() == 0:
        payload = _read_checkpoint(path, identity, model, optimizer)
    payload = distributed.broadcast_object(payload)
    if isinstance(payload, str):
        raise UserError(payload)
    return payload

def _read_checkpoint(path: Path, identity: dict[str, Any], model: nn.Module | None,
                     optimizer: torch.optim.Optimizer | None) -> dict[str, Any] | str | None:
    if not path.exists():
        log.warning("--resume: no checkpoint at %s, starting from epoch 1", path)
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/format problem means the same thing to the user
        return f"checkpoint {path} is unreadable ({type(exc).__name__}): delete it or use a new --run_name"
    not_ours = "it is not a checkpoint of this run; delete it or use a new --run_name"
    problem = validate_checkpoint(state)  # the layout first, so the identity can be read
    if problem is not None:
        return f"checkpoint {path} {problem}: {not_ours}"
    theirs = state["identity"]
    theirs = {**_IDENTITY_DEFAULTS, **theirs}
    if theirs["norm"] != identity["norm"] and theirs["model"] == identity["model"]:  # no flag selects it
        return (f"checkpoint {path} holds a {theirs['model']} with norm {theirs['norm']}, this code builds it with "
                f"norm {identity['norm']} (GIN has batch norm since 2026-12-03): retrain it under a new --run_name")
    diff = [k for k in _IDENTITY_KEYS if theirs.get(k) != identity[k]]
    if diff:
        was = ", ".join(f"{k}={theirs.get(k)}" for k in diff)
        now = ", ".join(f"{k}={identity[k]}" for k in diff)
        return (f"checkpoint {path} was written for {was} but this run has {now}: "
                "use the original settings, another --run_name, or drop --resume")
    problem = validate_checkpoint(state, model, optimizer)
    return state if problem is None else f"checkpoint {path} {problem}: {not_ours}"
