"""ReLU then dropout between layers, in place, keeping one bit per unit for backward.

Why: ``dropout(relu(h))`` as PyG's ``BasicGNN`` writes it holds three tensors of a hidden layer's width per
output row until backward: ReLU's output (saved), dropout's output and its float32 noise (saved: on CPU,
``at::dropout`` multiplies by a float noise tensor, not a bit mask). With fanouts 15,10,5 the first layer has
an output row for every node within two hops, ~100k-150k rows of 256 floats (1 KiB each), and these are most
of the training step's peak memory, and of its growth with the graph (more distinct nodes per batch).
Here ``h`` becomes the output in place; the noise is drawn as bools (1 byte, not 4), and backward needs only
where the gradient passes (``grad * scale`` there, 0 elsewhere), packed 8 units to a byte. The output itself
may go as soon as the next layer has read it (GraphSAGE's hidden layers keep nothing of their input,
src/train/chunked_layer.py). A gradient autograd hands in may be shared, so backward masks a copy; GraphSAGE
training defers ReLU + dropout into its next layer's Function (:class:`DeferredReluDropout`), which builds the
gradient itself and masks it in place: at the backward peak one hidden-wide tensor, the gradient.
The draws are ``at::dropout``'s (a Bernoulli stream is the same in any dtype), so the outputs and the random
stream are bit for bit PyG's, and so are the gradients, but for the sign of a zero (PyG's ``grad * 0`` of a
dropped unit is -0.0 where ``grad`` is negative; here +0.0, which no sum or product downstream tells apart).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
_ROWS_AT_ONCE = 4096  # rows packed or unpacked at a time: a bool copy of 4096 rows, not of the whole output


def _drop_and_pack_(relu_out: Tensor, keep: Tensor, scale: Tensor) -> Tensor:
    """``relu_out * keep * scale`` in place (x * 1 * scale, or x * 0, NaN staying NaN: ``at::dropout``'s
    ``x * noise``, bit for bit), and where the gradient passes, as bits (uint8 ``[n, ceil(w / 8)]``): where
    ReLU's output is not ``<= 0`` (NaN included; ReLU's backward) and the unit is kept (dropout's). A block of
    rows at a time: a float copy of ``keep`` would be as large as the output."""
    n, width = relu_out.shape
    packed = torch.empty(n, (width + 7) // 8, dtype=torch.uint8, device=relu_out.device)
    bits = _BITS.to(relu_out.device)
    for lo in range(0, n, _ROWS_AT_ONCE):
        rows = slice(lo, lo + _ROWS_AT_ONCE)
        passes = relu_out[rows].le(0).logical_not_().logical_and_(keep[rows])
        relu_out[rows].mul_(keep[rows]).mul_(scale)
        passes = F.pad(passes, (0, packed.size(1) * 8 - width)).view(passes.size(0), -1, 8)
        packed[rows] = passes.to(torch.uint8).mul_(bits).sum(-1, dtype=torch.uint8)
    return packed


def _zero_where_dropped_(grad: Tensor, packed: Tensor) -> Tensor:
    width, bit = grad.size(1), _BITS.to(packed.device)
    for lo in range(0, grad.size(0), _ROWS_AT_ONCE):
        bits = packed[lo:lo + _ROWS_AT_ONCE]
        keep = bits.unsqueeze(-1).bitwise_and(bit).ne(0).view(bits.size(0), -1)[:, :width]
        grad[lo:lo + _ROWS_AT_ONCE].masked_fill_(keep.logical_not_(), 0.0)
    return grad


def relu_dropout_packed_(h: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """``h = dropout(relu(h), p)`` in place (training, ``0 < p < 1``); returns what backward needs: where the
    gradient passes, as bits, and a kept unit's scale. For an autograd Function's forward (no grad mode)."""
    keep = torch.empty_like(h, dtype=torch.bool).bernoulli_(1 - p)  # at::dropout's draws, 1 byte each
    scale = torch.ones((), dtype=h.dtype).div_(1 - p)  # a kept unit's noise value, as at::dropout rounds it
    return _drop_and_pack_(h.relu_(), keep, scale), scale


def relu_dropout_backward_(grad: Tensor, packed: Tensor, scale: Tensor) -> Tensor:
    """The gradient before ReLU + dropout from the one after, overwriting ``grad`` (which the caller must own: a
    gradient autograd handed in may be shared, e.g. by both inputs of an addition)."""
    return _zero_where_dropped_(grad.mul_(scale), packed)


class _ReluDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Tensor, p: float) -> Tensor:  # noqa: ANN401
        ctx.mark_dirty(h)
        ctx.save_for_backward(*relu_dropout_packed_(h, p))
        return h

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: ANN401
        packed, scale = ctx.saved_tensors
        return _zero_where_dropped_(grad.mul(scale), packed), None  # a copy: the gradient handed in may be shared


@dataclass(frozen=True)
class DeferredReluDropout:
    """``dropout(relu(h), p)`` in training, left for the next layer to apply inside its own autograd Function: that
    one builds the gradient for ``h`` itself, so it may mask it in place (src/train/chunked_layer.py) where
    :class:`_ReluDropout` has to copy the gradient it is handed: one hidden-wide tensor less at the backward peak."""

    h: Tensor
    p: float

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.h.size() if dim is None else self.h.size(dim)


def packable(h: Tensor, p: float, training: bool) -> bool:
    """Whether :func:`relu_dropout_` may overwrite ``h`` and pack its bits: not a view (e.g. a module's output under
    a backward hook: autograd forbids overwriting it), ``[rows, width]`` with rows, and p < 1 in training (p = 1
    gives zeros anyway)."""
    return not h._is_view() and h.numel() > 0 and h.dim() == 2 and not (training and p == 1.0)


def relu_dropout_(h: Tensor, p: float, training: bool) -> Tensor:
    """``dropout(relu(h), p, training)``, overwriting ``h`` (which nothing else may need for backward; autograd
    raises at backward if something does)."""
    if not packable(h, p, training):
        return F.dropout(F.relu(h), p, training)
    if not training or p == 0.0:
        return h.relu_()
    return _ReluDropout.apply(h, p)
