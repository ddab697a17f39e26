"""The model zoo: trimmed layers compute what PyG's own untrimmed models compute, on sparse and dense x;
the metrics equal scikit-learn's; every model learns through NodeLoader on the in-memory backend
(the database backends run the same check in their own test modules).

GIN has batch norm: in eval mode (running statistics) trimmed equals untrimmed; in training mode the
batch statistics are over the rows each trimmed layer computes, checked against a layer-by-layer
reference over the same rows from the untrimmed edge list."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from torch_geometric.nn import models as pyg

from src.core.errors import UserError
from src.data.sources import load_dataset
from src.in_memory.full_graph import FullGraphBackend
from src.train.checkpoint import CHECKPOINT_FILE
from src.train.config import TrainConfig
from src.train.loop import train
from src.train.metrics import MetricAccumulator, roc_auc
from src.train.model import GIN, MODELS, batch_logits, build_model
from tests import backend_checks as checks

PYG_CLASSES = {"sage": pyg.GraphSAGE, "gcn": pyg.GCN, "gat": pyg.GAT, "gin": pyg.GIN}
PYG_KWARGS = {"gat": {"heads": 4}, "gin": {"norm": "batch_norm", "norm_kwargs": {"allow_single_element": True}}}


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
    """The model with seeded weights; batch norms get random running statistics and affine parameters, so that
    eval mode's normalisation is not the identity."""
    torch.manual_seed(0)
    model = build_model(name, cora.num_features, 32, cora.num_classes, num_layers=3, dropout=dropout, heads=4)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return model


def pyg_state_dict(name: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The zoo model's weights under PyG's names (GIN: our Sequential MLP is PyG's MLP with lins/norms)."""
    if name != "gin":
        return model.state_dict()
    rename = {"0": "lins.0", "1": "norms.0", "3": "lins.1"}
    return {re.sub(r"\.nn\.(\d)\.", lambda m: f".nn.{rename[m.group(1)]}.", k): v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", MODELS)
def test_trimmed_equals_untrimmed_and_pyg_and_sparse_input(name: str, cora, batch) -> None:
    model = make(name, cora).eval()
    trimmed, full = batch_logits(model, batch, trim=True), batch_logits(model, batch, trim=False)
    assert trimmed.shape == (64, cora.num_classes)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)
    sparse = batch.clone()
    sparse.x = batch.x.to_sparse()
    torch.testing.assert_close(batch_logits(model, sparse), trimmed, rtol=1e-5, atol=1e-6)
    # PyG's own model with the same weights, untrimmed, dense x
    ref = PYG_CLASSES[name](cora.num_features, 32, 3, cora.num_classes, **PYG_KWARGS.get(name, {})).eval()
    ref.load_state_dict(pyg_state_dict(name, model))
    torch.testing.assert_close(ref(batch.x, batch.edge_index)[:64], trimmed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_trimmed_training_step_has_the_same_loss_and_gradients(name: str, cora, batch) -> None:
    """Batch norm (GIN) in training mode normalises over the rows present, which trimming changes: GIN is
    compared in eval mode here (running statistics), in training mode by the test below."""
    grads = []
    for trim in (True, False):
        model = make(name, cora).train(name != "gin")  # dropout 0: the only randomness trimming would reorder
        loss = F.cross_entropy(batch_logits(model, batch, trim), batch.y[:64])
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def gin_on_kept_rows(model: torch.nn.Module, x: torch.Tensor, edge_index: torch.Tensor, hops: list[int]) -> torch.Tensor:
    """GIN layer by layer without trimming's offsets: layer i computes its first ``n_i`` rows (every hop but
    the outermost i + 1) from all edges into them in the untrimmed edge list, then its MLP and the norm over
    exactly those rows."""
    src, dst = edge_index
    for i, (conv, norm) in enumerate(zip(model.convs, model.norms)):
        n = sum(hops[:model.num_layers - i])
        into = dst < n
        summed = torch.zeros(n, x.size(1)).index_add_(0, dst[into], x[src[into]])
        x = conv.nn((1 + conv.eps) * x[:n] + summed)
        if i < model.num_layers - 1:
            x = model.act(norm(x))
    return x


@pytest.mark.parametrize("sparse", [False, True])
def test_trimmed_gin_in_training_mode_is_gin_on_the_kept_rows(cora, batch, sparse: bool) -> None:
    """Same loss, gradients and updated running statistics as the reference (dense and sparse first layer)."""
    hops = list(batch.num_sampled_nodes)
    model = make("gin", cora).train()
    reference = copy.deepcopy(model)
    x = batch.x.to_sparse() if sparse else batch.x
    trimmed = model(x, batch.edge_index, hops, list(batch.num_sampled_edges))[:64]
    expected = gin_on_kept_rows(reference, batch.x, batch.edge_index, hops)
    assert expected.shape == (64, cora.num_classes)
    torch.testing.assert_close(trimmed, expected, rtol=1e-4, atol=1e-5)
    F.cross_entropy(trimmed, batch.y[:64]).backward()
    F.cross_entropy(expected, batch.y[:64]).backward()
    for (key, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=key)
    for key, value in reference.state_dict().items():  # BN running statistics updated from the same rows
        torch.testing.assert_close(model.state_dict()[key], value, rtol=1e-4, atol=1e-6, msg=key)
    untrimmed = make("gin", cora).train()(batch.x, batch.edge_index)[:64]  # the statistics do differ
    assert not torch.allclose(untrimmed, trimmed, atol=1e-3)


def test_gin_trains_on_a_batch_of_one_seed(cora) -> None:
    """A shard's last batch may hold one seed: batch norm over one row uses the running statistics."""
    backend = FullGraphBackend(cora, fanouts=[3, 3], batch_size=1, num_loader_threads=0, feature_format="dense")
    one = next(iter(backend.make_loader(backend.split_nodes("train")[:1], shuffle=False, seed=1)))
    model = build_model("gin", cora.num_features, 16, cora.num_classes, num_layers=2, dropout=0.5).train()
    loss = F.cross_entropy(batch_logits(model, one), one.y[:1])
    assert torch.isfinite(loss)
    loss.backward()


def test_gin_checkpoint_without_batch_norm_is_refused_in_one_line(tmp_path: Path) -> None:
    """A GIN checkpoint from before batch norm (identity without "norm", weights of the MLP without it)."""
    cfg = TrainConfig(dataset="cora", fanouts=(3, 3), num_layers=2, hidden_channels=16, batch_size=256, lr=0.01,
                      epochs=1, model="gin", log_dir=str(tmp_path / "logs"), checkpoint_dir=str(tmp_path / "ckpt"),
                      run_name="old", num_loader_threads=1, max_steps_per_epoch=1, eval_every=1)
    ds = load_dataset("cora")
    train(FullGraphBackend(ds, fanouts=[3, 3], batch_size=256, num_loader_threads=1), cfg)
    path = tmp_path / "ckpt" / "old" / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    assert state["identity"].pop("norm") == "batch_norm"
    old = GIN(ds.num_features, 16, 2, ds.num_classes)  # PyG's norm=None: MLPs of Linear, ReLU, Linear
    assert not any("norm" in k for k in old.state_dict()) and set(old.state_dict()) != set(state["model"])
    state["model"] = old.state_dict()
    torch.save(state, path)
    with pytest.raises(UserError) as info:
        train(FullGraphBackend(ds, fanouts=[3, 3], batch_size=256, num_loader_threads=1),
              TrainConfig(**{**cfg.__dict__, "epochs": 2, "resume": True}))
    message = str(info.value)
    assert "holds a gin with norm None" in message and "batch_norm" in message and "\n" not in message
    assert "--run_name" in message


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
