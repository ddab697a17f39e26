""":func:`validate_checkpoint`: does a file that loads as a torch file hold a checkpoint of this run?

Why a module of its own: ``torch.load(weights_only=True)`` accepts any tensors, lists and dicts,
so a bare tensor, a list, a dict without ``model``, weights of the wrong shapes or a bad ``ranks``
or ``epoch`` would otherwise fail deep inside ``load_state_dict`` or the RNG restore with a
traceback. Every part is checked here first and the first problem is returned as one phrase.
"""
from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

import numpy as np
import torch
from torch import nn

_KEYS = ("epoch", "identity", "model", "optimizer", "ranks")


def validate_checkpoint(state: Any, model: nn.Module | None = None,
                        optimizer: torch.optim.Optimizer | None = None) -> str | None:
    """The first structural problem of ``state`` (a phrase), or None when it can be resumed from.

    ``model`` and ``optimizer`` (this run's, freshly built) check weight names and shapes; without
    them only the layout is checked.
    """
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a training checkpoint (a dict with {', '.join(_KEYS)})"
    missing = [k for k in _KEYS if k not in state]
    if missing:
        return f"has no {', '.join(missing)} (a training checkpoint has {', '.join(_KEYS)})"
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        return f"has epoch {epoch!r}; it must be a positive integer"
    if not isinstance(state["identity"], dict):
        return f"has identity of type {type(state['identity']).__name__}, not a dict"
    return (_model_problem(state["model"], model) or _optimizer_problem(state["optimizer"], optimizer)
            or _ranks_problem(state["ranks"]))


def _model_problem(weights: Any, model: nn.Module | None) -> str | None:
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return "has model weights that are not a dict of tensors"
    if model is None:
        return None
    expected = model.state_dict()
    if set(weights) != set(expected):
        odd = sorted(set(weights) ^ set(expected))
        return f"has model weights named differently from this model ({', '.join(odd[:3])})"
    for key, value in expected.items():
        if tuple(weights[key].shape) != tuple(value.shape):
            return (f"has model weight {key} of shape {tuple(weights[key].shape)}, "
                    f"this model's is {tuple(value.shape)}")
    return None


def _optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer | None) -> str | None:
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list):
        return "has an optimizer state that is not a dict with state and param_groups"
    if optimizer is None:
        return None
    try:
        copy.deepcopy(optimizer).load_state_dict(saved)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        return f"has an optimizer state that does not fit this model ({' '.join(str(exc).split())[:120]})"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in saved["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            return f"has optimizer state for parameter {index!r}, this model has {len(params)}"
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[index].shape:
                return (f"has optimizer {name} of shape {tuple(value.shape)} for a parameter of "
                        f"shape {tuple(params[index].shape)}")
    return None


def _ranks_problem(ranks: Any) -> str | None:
    from src.train.checkpoint import Progress, _set_rng_state

    if not isinstance(ranks, list) or not ranks:
        return "has ranks that are not a non-empty list (one entry per rank)"
    fields = {f.name for f in dataclasses.fields(Progress)}
    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        for k, entry in enumerate(ranks):
            if not isinstance(entry, dict) or not isinstance(entry.get("progress"), dict) or "rng" not in entry:
                return f"has ranks[{k}] without rng and progress"
            if not set(entry["progress"]) <= fields:
                return f"has ranks[{k}].progress with unknown fields {sorted(set(entry['progress']) - fields)}"
            try:
                _set_rng_state(entry["rng"])  # a trial: the states are put back below
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError):
                return f"has ranks[{k}].rng that is not a saved random state"
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
    return None
