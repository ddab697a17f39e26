"""Non-finite numbers stop a run at once, naming where (issue 24): a NaN or infinite loss used to
train on to ``loss=nan`` and exit 0, and a checkpoint of NaN weights resumed to ``loss=null``."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from src.core.errors import UserError


def require_finite_loss(loss: Tensor, epoch: int, step: int) -> float:
    """``loss`` as a float; a one-line :class:`UserError` naming the epoch and step if it is NaN or infinite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise UserError(f"the loss is {value} at epoch {epoch}, step {step}: the run is stopped before the weights "
                        "take it. Check the features for NaN/inf, lower --lr, or resume from an earlier checkpoint")
    return value


def require_finite_weights(model: nn.Module, checkpoint: Path) -> None:
    """A one-line :class:`UserError` when weights restored from ``checkpoint`` hold NaN or inf."""
    bad = sum(int((~torch.isfinite(p)).sum()) for p in model.state_dict().values() if p.is_floating_point())
    if bad:
        raise UserError(f"checkpoint {checkpoint} holds {bad} non-finite weights (NaN or inf): it cannot be resumed; "
                        "start the run afresh (drop --resume) or use another --run_name")
