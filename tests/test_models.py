"""The model zoo: trimmed layers compute what PyG's own untrimmed models compute, on sparse and dense x;
the metrics equal scikit-learn's; every model learns through NodeLoader on the in-memory backend
(the database backends run the same check in their own test modules)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from torch_geometric.nn import models as pyg

from src.data.sources import load_dataset
from src.in_memory.full_graph import FullGraphBackend
from src.train.metrics import MetricAccumulator, roc_auc
from src.train.model import MODELS, batch_logits, build_model
from tests import backend_checks as checks

PYG_CLASSES = {"sage": pyg.GraphSAGE, "gcn": pyg.GCN, "gat": pyg.GAT}  # gin: our MLP differs from PyG's default


@pytest.fixture(scope="module")
def cora():
    return load_dataset("cora")


@pytest.fixture(scope="module")
def batch(cora):
    """A 3-hop batch of cora (dense x) from the in-memory sampler: the seeds' hops as every backend lays them out."""
    backend = FullGraphBackend(cora, fanouts=[10, 5, 5], batch_size=64, num_loader_threads=0, feature_format="dense")
    out = next(iter(backend.make_loader(backend.split_nodes("train"), shuffle=False, seed=1)))
    assert len(out.num_sampled_nodes) == 4 and out.num_sampled_nodes[-1] > 0  # there is something to trim
    return out


def make(name: str, cora, dropout: float = 0.0):
    torch.manual_seed(0)
    return build_model(name, cora.num_features, 32, cora.num_classes, num_layers=3, dropout=dropout, heads=4)


@pytest.mark.parametrize("name", MODELS)
def test_trimmed_equals_untrimmed_and_pyg_and_sparse_input(name: str, cora, batch) -> None:
    model = make(name, cora).eval()
    trimmed, full = batch_logits(model, batch, trim=True), batch_logits(model, batch, trim=False)
    assert trimmed.shape == (64, cora.num_classes)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)
    sparse = batch.clone()
    sparse.x = batch.x.to_sparse()
    torch.testing.assert_close(batch_logits(model, sparse), trimmed, rtol=1e-5, atol=1e-6)
    if name in PYG_CLASSES:  # PyG's own model with the same weights, untrimmed, dense x
        kwargs = {"heads": 4} if name == "gat" else {}
        ref = PYG_CLASSES[name](cora.num_features, 32, 3, cora.num_classes, **kwargs).eval()
        ref.load_state_dict(model.state_dict())
        torch.testing.assert_close(ref(batch.x, batch.edge_index)[:64], trimmed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_trimmed_training_step_has_the_same_loss_and_gradients(name: str, cora, batch) -> None:
    grads = []
    for trim in (True, False):
        model = make(name, cora).train()  # dropout 0: the only randomness trimming would reorder
        loss = F.cross_entropy(batch_logits(model, batch, trim), batch.y[:64])
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_pyg_graphsage_checkpoint_keys_are_the_old_models() -> None:
    """Checkpoints written by the project's own GraphSAGE class load into the zoo's (same state-dict keys)."""
    keys = set(build_model("sage", 10, 8, 3, num_layers=2, dropout=0.0).state_dict())
    assert keys == {f"convs.{i}.{lin}.{p}" for i in (0, 1) for lin, p in
                    (("lin_l", "weight"), ("lin_l", "bias"), ("lin_r", "weight"))}


@pytest.mark.parametrize("name", MODELS)
def test_every_model_learns_in_memory_with_sparse_x(name: str) -> None:
    torch.set_num_threads(1)
    ds = load_dataset("cora")  # held sparse (1.3% non-zero): x reaches the model as sparse COO
    backend = FullGraphBackend(ds, fanouts=[5, 5], batch_size=32, num_loader_threads=1)
    assert backend.x_csr is not None
    checks.check_graphsage_trains(backend, ds, database=False, model=name)


def test_metrics_equal_scikit_learn_on_fixed_predictions() -> None:
    rng = np.random.default_rng(0)
    for classes in (2, 5):
        logits = torch.from_numpy(rng.normal(size=(997, classes)).astype(np.float32))
        target = torch.from_numpy(rng.integers(0, classes, 997))
        target[:7] = 1  # ties and a class never predicted are fine
        acc = MetricAccumulator(classes)
        for part in torch.arange(997).split(100):  # accumulated over batches
            acc.add(logits[part], target[part])
        got = acc.reduce()
        pred = logits.argmax(1).numpy()
        assert got["acc"] == pytest.approx(accuracy_score(target, pred), abs=1e-12)
        assert got["f1"] == pytest.approx(f1_score(target, pred, average="macro"), abs=1e-12)
        if classes == 2:
            proba = torch.softmax(logits, 1)[:, 1].numpy()
            assert got["auc"] == pytest.approx(roc_auc_score(target, proba), abs=1e-12)
        else:
            assert got["auc"] is None
    scores = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.9])  # ties across classes count one half
    labels = np.array([0, 0, 1, 0, 1, 1])
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert roc_auc(scores, np.zeros(6, int)) is None
