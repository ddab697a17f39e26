"""The training step's memory savers compute what PyG computes.

- GraphSAGE's first layer gathering a chunk of edges at a time (src/train/chunked_layer.py) equals PyG's
  ``SAGEConv`` (nodes without in-edges included), and any chunk size gives the same bits;
- its hidden layers' neighbour mean, whose backward scatters a chunk of edges at a time into one gradient,
  gives PyG's outputs and gradients and creates no per-edge hidden-wide tensor, forward or backward;
- rows handed to it still encoded (:class:`EncodedRows`) give the bits float rows give, forward and backward, and
  its root term decodes them a block of rows at a time (no float32 copy of the roots);
- training, ReLU + dropout before a hidden layer runs in that layer's Function, which masks the gradient it builds
  in place: the same bits as ReLU + dropout on its own, one hidden-wide gradient fewer;
- ReLU + dropout in place (src/train/inplace_act.py) is bit for bit ``dropout(relu(h))``: same random draws,
  same outputs, same gradients (NaN included), keeping one bit per unit for backward; a view (a module output
  under a backward hook) takes PyG's path;
- glibc's mmap threshold is fixed at import (src/core/malloc_threshold.py): a 2 MiB block is mapped afresh even
  after a 16 MiB one was freed, which under glibc's dynamic default would have raised the threshold.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch_geometric.nn import SAGEConv

from src.data.sources import load_dataset
from src.in_memory.full_graph import FullGraphBackend
from src.train import chunked_layer
from src.train.chunked_layer import EncodedRows, neighbour_mean, sage_layer
from src.train.inplace_act import relu_dropout_
from src.train.model import batch_logits, build_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def batch():
    """A 3-hop cora batch (dense x) as every backend lays it out."""
    cora = load_dataset("cora")
    backend = FullGraphBackend(cora, fanouts=[10, 5, 5], batch_size=64, num_loader_threads=0, feature_format="dense")
    return next(iter(backend.make_loader(backend.split_nodes("train"), shuffle=False, seed=1)))


def int8_rows(x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """x as per-column affine uint8 codes and their row-wise decoder (the int8 storage's shape)."""
    lo, hi = x.min(0).values, x.max(0).values
    scale = torch.where(hi > lo, (hi - lo) / 255, torch.ones_like(lo))
    codes = ((x - lo) / scale).round().clamp(0, 255).to(torch.uint8)
    return codes, lambda c: c.to(torch.float32) * scale + lo


def test_chunked_mean_equals_sage_conv_and_chunking_changes_no_bit(batch) -> None:
    torch.manual_seed(0)
    conv = SAGEConv(batch.x.size(1), 16)
    edge_index = batch.edge_index[:, ::2]  # some destinations lose every in-edge: their mean must be 0
    num_dst = 200
    keep = edge_index[1] < num_dst
    edge_index = edge_index[:, keep]
    assert torch.bincount(edge_index[1], minlength=num_dst).eq(0).any()
    want = conv((batch.x, batch.x[:num_dst]), edge_index, size=(batch.x.size(0), num_dst))
    got = sage_layer(conv, batch.x, edge_index, num_dst)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    one = neighbour_mean(batch.x, edge_index, num_dst, chunk_edges=edge_index.size(1))
    for chunk in (1, 7, 64):
        assert torch.equal(neighbour_mean(batch.x, edge_index, num_dst, chunk_edges=chunk), one)


class _RowsOfEveryTensor(TorchDispatchMode):
    """Records the row count of every float tensor an op creates while active (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 2:
                self.rows.append(t.size(0))
        return out


@pytest.mark.parametrize("chunk", [1, 7, 100_000])
def test_hidden_layer_mean_equals_sage_conv_without_a_row_per_edge(monkeypatch, chunk: int) -> None:
    """A second layer's shape: more sampled edges than source rows, some destinations without in-edges."""
    torch.manual_seed(0)
    conv = SAGEConv(32, 16)
    num_src, num_dst, num_edges = 300, 100, 2_000
    edge_index = torch.stack([torch.randint(0, num_src, (num_edges,)), torch.randint(0, num_dst - 10, (num_edges,))])
    h = torch.randn(num_src, 32)
    upstream = torch.randn(num_dst, 16)  # gradients of both signs
    runs = []
    for ours in (False, True):
        conv.zero_grad()
        x = (h * 1.0).requires_grad_()
        monkeypatch.setattr(chunked_layer, "CHUNK_EDGES", chunk)
        with _RowsOfEveryTensor() as seen:
            out = (sage_layer(conv, x, edge_index, num_dst) if ours
                   else conv((x, x[:num_dst]), edge_index, size=(num_src, num_dst)))
            (out * upstream).sum().backward()
        runs.append((out.detach(), x.grad, [p.grad.clone() for p in conv.parameters()], max(seen.rows)))
    (want, want_dx, want_dw, pyg_rows), (got, got_dx, got_dw, our_rows) = runs
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_dx, want_dx, rtol=1e-5, atol=1e-6)
    for a, b in zip(got_dw, want_dw):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert pyg_rows == num_edges and our_rows == max(num_src, min(chunk, num_edges))  # one chunk at most


def test_encoded_rows_train_as_their_float_decode(batch) -> None:
    """The SAGE model over EncodedRows: the same logits and gradients, bit for bit, as over the decoded floats;
    models without a reading first layer (GCN) decode the rows whole first."""
    dense = batch.x + 0.1 * torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(0))
    codes, decode = int8_rows(dense)  # dense rows: mostly-zero float x would take the sparse first layer
    floats = decode(codes)
    encoded = EncodedRows(codes, decode, batch.x.size(1))
    assert encoded.size() == floats.shape and encoded.size(0) == len(encoded) == floats.size(0)
    for name in ("sage", "gcn"):
        runs = []
        for x in (floats, encoded):
            torch.manual_seed(0)
            model = build_model(name, batch.x.size(1), 32, 7, num_layers=3, dropout=0.5).train()
            step = batch.clone()
            step.x = x
            torch.manual_seed(5)  # the same dropout draws
            loss = F.cross_entropy(batch_logits(model, step), batch.y[:64])
            loss.backward()
            runs.append([loss.detach()] + [p.grad for p in model.parameters()])
        for a, b in zip(*runs):
            assert torch.equal(a, b), name


class _CreatedShapes(TorchDispatchMode):
    """Records the shape of every 2-D float tensor an op creates while active, once per storage (an in-place op
    or a view returns a storage it did not create)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, int]] = []
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 2 and t._base is None:
                if t.untyped_storage().data_ptr() not in self._seen:
                    self._seen.add(t.untyped_storage().data_ptr())
                    self.shapes.append(tuple(t.shape))
        return out


def _sage_step(batch, x, *, pyg: bool = False, deferred: bool = True, hidden: int = 32, trim: bool = False):
    """Logits and gradients of one 3-layer GraphSAGE training step with dropout 0.5 (fixed draws), and the 2-D
    float shapes created in backward."""
    torch.manual_seed(0)
    model = build_model("sage", batch.x.size(1), hidden, 7, num_layers=3, dropout=0.5).train()
    if pyg:
        from torch_geometric.nn.models import GraphSAGE
        ours = model
        model = GraphSAGE(batch.x.size(1), hidden, 3, 7, dropout=0.5).train()
        model.load_state_dict(ours.state_dict())
    elif not deferred:  # ReLU + dropout as its own autograd Function, which copies the gradient it is handed
        from src.train.model import TrimmedForward
        model._between_layers = lambda h, next_conv: TrimmedForward._between_layers(model, h, next_conv)
    torch.manual_seed(5)
    step = batch.clone()
    step.x = x
    logits = batch_logits(model, step, trim) if trim else model(x, batch.edge_index)
    with _CreatedShapes() as created:
        (logits * torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))).sum().backward()
    return logits.detach(), [p.grad for p in model.parameters()], created.shapes


def test_deferred_relu_dropout_masks_its_own_gradient_in_place(batch) -> None:
    """Training GraphSAGE, ReLU + dropout before a hidden layer runs inside that layer's Function: the same bits
    as a ReLU + dropout Function of its own, PyG's GraphSAGE to rounding (same draws), and backward builds one
    gradient per hidden layer input, where the Function of its own copies it (a second [nodes, hidden] tensor)."""
    dense = batch.x + 0.1 * torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(0))
    runs = {name: _sage_step(batch, dense, **kw)
            for name, kw in (("deferred", {}), ("own", {"deferred": False}), ("pyg", {"pyg": True}))}
    (out, grads, _), (out2, grads2, _) = runs["deferred"], runs["own"]
    assert torch.equal(out, out2) and all(torch.equal(a, b) for a, b in zip(grads, grads2))
    torch.testing.assert_close(out, runs["pyg"][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, runs["pyg"][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    # trimmed, layer 1's output has a row per node within two hops (most of a real step's memory)
    hidden, rows = 48, sum(batch.num_sampled_nodes[:3])
    (out, grads, shapes), (out2, grads2, shapes2) = (_sage_step(batch, dense, hidden=hidden, trim=True, deferred=d)
                                                     for d in (True, False))
    assert torch.equal(out, out2) and all(torch.equal(a, b) for a, b in zip(grads, grads2))
    assert shapes.count((rows, hidden)) == 1 and shapes2.count((rows, hidden)) == 2


def test_first_layer_root_term_keeps_no_float_copy_of_encoded_rows(batch, monkeypatch) -> None:
    """Rows still encoded: the first layer's root term is decoded a block of rows at a time, forward and again in
    backward, never whole; the weight's gradient (summed by blocks) is PyG's to rounding."""
    dense = batch.x + 0.1 * torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(0))
    codes, decode = int8_rows(dense)
    torch.manual_seed(0)
    conv = SAGEConv(dense.size(1), 16)
    num_dst, width = 300, dense.size(1)
    edge_index = batch.edge_index[:, batch.edge_index[1] < num_dst]
    monkeypatch.setattr(chunked_layer, "ROOT_ROWS", 64)
    monkeypatch.setattr(chunked_layer, "CHUNK_EDGES", 64)
    upstream = torch.randn(num_dst, 16, generator=torch.Generator().manual_seed(1))
    rows = EncodedRows(codes, decode, width)
    with _CreatedShapes() as created:
        out = sage_layer(conv, rows, edge_index, num_dst)
        loss = (out * upstream).sum()
        loss.backward()
    got = conv.lin_r.weight.grad.clone()
    held = weakref.ref(rows)
    del rows
    assert held() is None  # the graph (alive with the loss, as in the training loop) lets go of the batch's rows
    assert max(n for n, w in created.shapes if w == width and n != num_dst) <= 64  # root blocks, edge chunks
    assert created.shapes.count((num_dst, width)) == 1  # the neighbour mean lin_l keeps; no root copy
    conv.zero_grad()
    floats = decode(codes)
    want = conv((floats, floats[:num_dst]), edge_index, size=(floats.size(0), num_dst))
    (want * upstream).sum().backward()
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, conv.lin_r.weight.grad, rtol=1e-4, atol=1e-4)


def test_chunks_smaller_than_the_edges_are_what_a_trained_step_uses(batch, monkeypatch) -> None:
    """The layer's default chunk is the one the model uses: shrinking it changes no logit (dense rows: mostly-zero
    ones take the sparse first layer, which has no chunks)."""
    dense = batch.clone()
    dense.x = batch.x + 0.1 * torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model("sage", batch.x.size(1), 32, 7, num_layers=3, dropout=0.0).eval()
    want = batch_logits(model, dense)
    calls = []
    real = chunked_layer.neighbour_mean
    monkeypatch.setattr(chunked_layer, "neighbour_mean", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(chunked_layer, "CHUNK_EDGES", 5)
    assert torch.equal(batch_logits(model, dense), want) and calls


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("width", [64, 61])  # 61: the last byte of each row's bits half used
def test_relu_dropout_in_place_is_pyg_bit_for_bit(p: float, training: bool, width: int) -> None:
    rows = 5000  # more than one block of packed rows
    base = torch.randn(rows, 64)
    outs, grads, saved = [], [], []
    for fused in (False, True):
        w = torch.randn(64, width, generator=torch.Generator().manual_seed(1)).requires_grad_()
        pre = (base @ w).detach()
        pre[0, :3] = float("nan")  # ReLU passes a NaN's gradient (NaN <= 0 is false); dropout not if dropped
        pre.requires_grad_()
        h = pre * 1.0  # a fresh layer output, as between the model's layers
        torch.manual_seed(9)
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):
            out = relu_dropout_(h, p, training) if fused else F.dropout(F.relu(h), p, training)
        (out * torch.randn(width, generator=torch.Generator().manual_seed(2))).sum().backward()  # both signs
        outs.append(out.detach().clone())
        grads.append(pre.grad)
        saved.append(sum(sizes))
    assert torch.equal(outs[0].nan_to_num(), outs[1].nan_to_num())
    assert torch.equal(grads[0].nan_to_num(), grads[1].nan_to_num())
    assert outs[1].isnan().equal(outs[0].isnan()) and grads[1].isnan().equal(grads[0].isnan())
    if fused and training and 0 < p < 1:  # one bit per unit (and the scale), not the output
        assert saved[1] == rows * ((width + 7) // 8) + 4
    torch.manual_seed(9)
    F.dropout(torch.ones(300, 64), p, training)
    after_pyg = torch.rand(3)
    torch.manual_seed(9)
    relu_dropout_(torch.ones(300, 64), p, training)
    assert torch.equal(torch.rand(3), after_pyg)


def test_relu_dropout_of_a_view_takes_pyg_path() -> None:
    h = torch.randn(10, 4, requires_grad=True) * 1.0
    view = h[:5]
    torch.manual_seed(1)
    out = relu_dropout_(view, 0.5, True)
    torch.manual_seed(1)
    assert torch.equal(out, F.dropout(F.relu(view), 0.5, True))
    assert torch.equal(view, h[:5])  # not overwritten


PROBE = textwrap.dedent("""
    import ctypes, sys
    import src  # noqa: F401  (fixes the threshold unless told not to)
    import torch
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    big = torch.empty(16 << 20, dtype=torch.uint8); big.fill_(1); del big   # dynamic mode: threshold -> 16 MiB
    before = libc.mallinfo2().hblkhd
    small = torch.empty(2 << 20, dtype=torch.uint8); small.fill_(1)
    print(libc.mallinfo2().hblkhd - before >= 2 << 20)
""")


def has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not has_mallinfo2(), reason="glibc >= 2.33's allocator statistics")
def test_freed_blocks_of_a_mebibyte_go_back_to_the_kernel() -> None:
    def mapped_afresh(**env: str) -> bool:
        run = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120,
                             env={k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GNN_MMAP"))}
                             | env | {"THP_MEM_ALLOC_ENABLE": "0"})
        assert run.returncode == 0, run.stderr
        return run.stdout.strip().splitlines()[-1] == "True"

    assert mapped_afresh()  # fixed at import: the 2 MiB block is its own mapping
    assert not mapped_afresh(GNN_MMAP_THRESHOLD="0")  # glibc's dynamic threshold: it came from the heap
    assert mapped_afresh(GNN_MMAP_THRESHOLD="oops")  # a bad value warns and keeps the default
