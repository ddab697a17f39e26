"""ReLU then dropout between layers, in place, keeping nothing for backward but the output itself.

Why: ``dropout(relu(h))`` as PyG's ``BasicGNN`` writes it holds three tensors of a hidden layer's width per
output row until backward: ReLU's output (saved), dropout's output and its float32 noise (saved: on CPU,
``at::dropout`` multiplies by a float noise tensor, not a bit mask). With fanouts 15,10,5 the first layer has
an output row for every node within two hops, ~100k-150k rows of 256 floats (1 KiB each), and these three are
most of the training step's peak memory, and of its growth with the graph (more distinct nodes per batch).
Here ``h`` becomes the output in place, and backward needs only it: ``grad * scale`` where the output is
positive, 0 elsewhere. The noise is drawn exactly as ``at::dropout`` draws it, so the outputs and the random
stream are bit for bit PyG's, and so are the gradients, but for the sign of a zero (PyG's ``grad * 0`` of a
dropped unit is -0.0 where ``grad`` is negative; here +0.0, which no sum or product downstream tells apart).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class _ReluDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Tensor, p: float) -> Tensor:  # noqa: ANN401
        noise = torch.empty_like(h).bernoulli_(1 - p).div_(1 - p)  # at::dropout's draws, in its order
        ctx.mark_dirty(h)
        h.relu_().mul_(noise)
        ctx.save_for_backward(h, torch.ones((), dtype=h.dtype).div_(1 - p))  # a kept unit's noise value
        return h

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN401
        out, scale = ctx.saved_tensors
        return grad.mul(scale).masked_fill_(out <= 0, 0.0), None


def relu_dropout_(h: Tensor, p: float, training: bool) -> Tensor:
    """``dropout(relu(h), p, training)``, overwriting ``h`` (which nothing else may need for backward; autograd
    raises at backward if something does)."""
    if h._is_view() or h.numel() == 0 or (training and p == 1.0):  # a view: e.g. a module's output under a full backward hook,
        return F.dropout(F.relu(h), p, training)  # which autograd forbids overwriting; p = 1: all zeros anyway
    if not training or p == 0.0:
        return h.relu_()
    return _ReluDropout.apply(h, p)
