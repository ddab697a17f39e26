"""The typed model zoo (src/train/hetero_model.py) on real heterogeneous batches of the in-memory backend:
every model's trimmed forward equals its untrimmed self on the seeds while computing fewer rows, each
learns a batch, and GCN is refused in one line."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import src.train.hetero_model as hetero_model
from src.core.errors import UsageError
from src.data.synthetic_hetero import generate_hetero
from src.in_memory.hetero import InMemoryHeteroBackend
from src.train.model import batch_logits

FANOUTS = "writes:4,3;written_by:3,3;cites:4,2;publishes:1,1"


@pytest.fixture(scope="module")
def batch():
    ds = generate_hetero(num_nodes=1500, avg_degree=6, num_features=8, num_classes=3, seed=5)
    backend = InMemoryHeteroBackend(ds, target_type="paper", fanouts=FANOUTS, batch_size=64, num_loader_threads=1,
                                    featureless="degree")
    b = next(iter(backend.make_loader(torch.arange(64), shuffle=False, seed=1)))
    return backend, b


def make(backend, model: str, layers: int = 2):
    cfg = SimpleNamespace(num_layers=layers, hidden_channels=16, dropout=0.0, model=model, heads=4)
    torch.manual_seed(0)
    return backend.make_model(cfg).eval()


@pytest.mark.parametrize("model", ["sage", "gat", "gin"])
def test_trimmed_forward_equals_untrimmed_on_the_seeds_with_fewer_rows(batch, model: str, monkeypatch) -> None:
    backend, b = batch
    net = make(backend, model)
    sizes = []
    real = hetero_model.trim_to_layer

    def spy(layer, *args):
        out = real(layer, *args)
        sizes.append(sum(v.size(0) for v in out[0].values()))
        return out

    monkeypatch.setattr(hetero_model, "trim_to_layer", spy)
    with torch.no_grad():
        trimmed = batch_logits(net, b, trim=True)
        assert len(sizes) == 2 and sizes[1] < sizes[0]  # layer 2 saw fewer rows
        full = batch_logits(net, b, trim=False)
    assert len(sizes) == 2  # the untrimmed forward does not trim
    assert trimmed.shape == (64, 3)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model", ["sage", "gat", "gin"])
def test_every_typed_model_learns_a_batch(batch, model: str) -> None:
    backend, b = batch
    net = make(backend, model).train()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(batch_logits(net, b), b.y[:64])
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses


def test_gcn_and_bad_heads_are_one_line(batch) -> None:
    backend, _ = batch
    with pytest.raises(UsageError, match="--model gcn does not apply to heterogeneous datasets"):
        make(backend, "gcn")
    cfg = SimpleNamespace(num_layers=2, hidden_channels=10, dropout=0.0, model="gat", heads=4)
    with pytest.raises(UsageError, match="--hidden_channels 10 must be a multiple of --heads 4"):
        backend.make_model(cfg)
