"""Compressed feature rows (``--feature_format float16|bfloat16|int8``) against a real Neo4j.

What must hold: the rows the trainer gets are the float32 decode of the stored narrow values, bit
for bit equal to a reference decode written here with numpy/torch (torch's own bfloat16 cast for
bfloat16), on both ways in (UNWIND, offline import) and both read paths (``gnn.fetchRows``,
Cypher), through the feature cache and the normaliser; the record names the encoding (and the
8-bit scales) so no reader decodes rows another way; inputs that do not fit are one line; a short
cora training run is as accurate as float32's.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from src.client import Neo4jSettings, connect
from src.core.codecs import (BFLOAT16, FLOAT16, UINT8_AFFINE, ColumnAffine, decode_rows, encode_rows, row_bytes,
                             split_rows)
from src.core.errors import UsageError, UserError
from src.core.record import DatasetRecord
from src.core.schema import GraphSchema
from src.data.graph import GraphDataset
from src.data.loading import FeatureLayout, LoadConfig
from src.data.sources import load_dataset
from src.feature_store import Neo4jFeatureStore
from src.neo4jdb.access import Neo4jAccess
from src.neo4jdb.backend import Neo4jBackend
from src.neo4jdb.load.bulk_import import write_import_arrays
from src.neo4jdb.load.ensure import ensure_loaded
from src.neo4jdb.load.records import require_loaded
from src.neo4jdb.local import LocalNeo4j
from src.train.chunked_layer import EncodedRows
from src.train.config import TrainConfig
from src.train.loop import train

REPO = Path(__file__).resolve().parents[1]
FORMATS = {"float16": FLOAT16, "bfloat16": BFLOAT16, "int8": UINT8_AFFINE}
SYNTH = {"num_nodes": 3000, "avg_degree": 6, "num_features": 40, "num_classes": 4, "seed": 0}


@pytest.fixture(scope="module")
def synth() -> GraphDataset:
    """Gaussian features (every value rounds under each encoding), a few exact edge cases planted."""
    ds = load_dataset("synthetic", **SYNTH)
    x = np.array(ds.features(np.arange(ds.num_nodes)), dtype=np.float32)
    x[0, :4] = [0.0, -0.0, 1e-30, 3.0e-6]  # zero signs, a float16 underflow, a float16 subnormal
    x[1] = 0.0  # an all-zero row
    return dataclasses.replace(ds, name="compress_synth", x=x)


def reference(x: np.ndarray, fmt: str, quant: ColumnAffine | None = None) -> np.ndarray:
    """What the trainer must see for source rows ``x``: the rounding of each format, decoded to float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if fmt == "float16":
        return x.astype(np.float16).astype(np.float32)
    if fmt == "bfloat16":
        return torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    q = np.clip(np.rint((x - quant.offset) / np.where(quant.scale > 0, quant.scale, 1)), 0, 255).astype(np.uint8)
    return (q.astype(np.float32) * quant.scale + quant.offset).astype(np.float32)


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


# ------------------------------------------------------------------------------ codecs, no database
@pytest.mark.parametrize("fmt", FORMATS)
def test_codec_decodes_like_the_reference_into_place(synth: GraphDataset, fmt: str) -> None:
    layout = FeatureLayout.choose(synth, fmt)
    assert layout.encoding == FORMATS[fmt] and 0 < layout.error < 0.01
    x = synth.x
    raw, lengths = encode_rows(x, layout.encoding, layout.quant)
    width = {"float16": 2, "bfloat16": 2, "int8": 1}[fmt] * synth.num_features
    assert len(raw) == width * synth.num_nodes and (lengths == width).all()
    assert row_bytes(layout.encoding, synth.num_features) == width
    want = reference(x, fmt, layout.quant)
    assert np.array_equal(bits(decode_rows(raw, lengths, synth.num_features, layout.encoding, quant=layout.quant)),
                          bits(want))
    at = np.random.default_rng(1).permutation(synth.num_nodes + 7)[:synth.num_nodes]  # scattered into a batch
    out = np.full((synth.num_nodes + 7, synth.num_features), np.nan, np.float32)
    decode_rows(raw, lengths, synth.num_features, layout.encoding, out=out, at=at, quant=layout.quant)
    assert np.array_equal(bits(out[at]), bits(want))
    if fmt != "int8":
        assert bits(want[0, :2]).tolist() == [0, 0x80000000]  # -0.0 kept
    if fmt == "int8":  # a constant column decodes exactly, every value within half a step
        assert np.all(np.abs(want - x) <= 0.51 * layout.quant.scale + 1e-6 * np.abs(layout.quant.offset))


def test_import_arrays_hold_the_encoded_rows(tmp_path: Path, synth: GraphDataset) -> None:
    layout = FeatureLayout.choose(synth, "int8")
    write_import_arrays(synth, tmp_path, encoding=layout.encoding, quant=layout.quant, progress=False)
    raw, _ = encode_rows(synth.x, layout.encoding, layout.quant)
    assert (tmp_path / "x.bin").read_bytes() == raw
    assert np.array_equal(np.fromfile(tmp_path / "x.ptr", dtype="<i8"), np.arange(synth.num_nodes + 1) * 40)


# ------------------------------------------------------------------------------ bad input, one line each
def test_float16_overflow_is_refused_with_the_fix(synth: GraphDataset) -> None:
    x = synth.x.copy()
    x[5, 3] = 1.0e5
    with pytest.raises(UserError, match=r"reach 100000, beyond float16's 65504; use --feature_format bfloat16"):
        FeatureLayout.choose(dataclasses.replace(synth, x=x), "float16")
    assert FeatureLayout.choose(dataclasses.replace(synth, x=x), "bfloat16").encoding == BFLOAT16


def test_int8_outliers_refused_above_the_bound_and_forced_with_a_warning(synth: GraphDataset, caplog) -> None:
    x = synth.x.copy()
    x[7] = 500.0  # one outlier per column: 255 steps stretched over [-4, 500]
    ds = dataclasses.replace(synth, x=x)
    with pytest.raises(UserError, match=r"--feature_format int8: RMS error [0-9.]+% .* above the 5% bound .*"
                                        r"--force_encoding") as err:
        FeatureLayout.choose(ds, "int8")
    assert "\n" not in str(err.value)
    with caplog.at_level(logging.WARNING):
        layout = FeatureLayout.choose(ds, "int8", force=True)
    assert layout.error > 0.05 and "loading it anyway (--force_encoding)" in caplog.text
    nan = synth.x.copy()
    nan[3, 3] = np.nan
    with pytest.raises(UserError, match="NaN or infinite values, which 8-bit codes cannot store"):
        FeatureLayout.choose(dataclasses.replace(synth, x=nan), "int8")


def test_unknown_encoding_and_ladybug_are_one_line() -> None:
    with pytest.raises(UsageError, match="unknown feature encoding 'int4'"):
        FeatureLayout.choose(load_dataset("cora"), "int4")
    for argv, expect in ((["--dataset", "cora", "--feature_format", "int4"], "invalid choice: 'int4'"),
                         (["--dataset", "cora", "--backend", "ladybug", "--feature_format", "int8",
                           "--ladybug_path", "/nonexistent/x.lbdb"],
                          "--feature_format int8 applies to Neo4j only; Ladybug stores dense float32 rows")):
        out = subprocess.run([sys.executable, "loaders/load_into_neo4j.py", *argv], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2, out.stderr
        last = out.stderr.strip().splitlines()
        assert expect in last[-1], out.stderr
        assert len(last) == 1 or last[0].startswith("usage:")  # argparse's choices: its usage, then the line


def test_record_without_its_scales_or_of_an_unknown_encoding_is_refused() -> None:
    props = {"name": "d", "label": "d", "rel_type": "d_EDGE", "num_features": 4}
    with pytest.raises(UserError, match="feature_quant\\) are unreadable .*reload it with --reset"):
        DatasetRecord.from_properties({**props, "feature_encoding": UINT8_AFFINE}).quant()
    with pytest.raises(UserError, match="stores features as 'int4-le', which this version cannot read"):
        DatasetRecord.from_properties({**props, "feature_encoding": "int4-le"}).quant()


# ------------------------------------------------------------------------------ Neo4j, UNWIND
@pytest.fixture(scope="module")
def loaded(client, synth: GraphDataset):
    """``fmt -> (schema, record)``: the synthetic graph loaded with UNWIND once per format."""
    out = {}
    for fmt in FORMATS:
        schema = GraphSchema.for_dataset(f"pytest_compress_{fmt}")
        ensure_loaded(client, synth, schema, LoadConfig(method="unwind", progress=False, feature_format=fmt))
        out[fmt] = schema, require_loaded(client, schema.dataset)
    return out


@pytest.mark.neo4j
@pytest.mark.parametrize("fmt", FORMATS)
def test_unwind_rows_read_back_bit_exact_on_every_path(client, synth: GraphDataset, loaded, fmt: str) -> None:
    schema, record = loaded[fmt]
    assert record.feature_encoding == FORMATS[fmt] and record.properties["feature_error"] < 0.01
    quant = record.quant()
    assert (quant is not None) == (fmt == "int8")
    want = reference(synth.x, fmt, quant)
    stored = [bytes(r["x"]) for r in client.read(f"MATCH (n:`{schema.label}`) RETURN n.x AS x ORDER BY n.id")]
    assert stored == split_rows(*encode_rows(synth.x, record.feature_encoding, quant))  # the narrow bytes
    ids = np.random.default_rng(2).integers(0, synth.num_nodes, 2500)
    ids[:5] = ids[0]
    for access in (Neo4jAccess(use_procedures=True, adj_prop="nbrs"), Neo4jAccess.cypher()):
        for cache_mb in (0.0, 0.1):  # 0.1 MiB: a few hundred rows cached, the rest over Bolt
            fs = Neo4jFeatureStore.from_record(client, record, access=access, cache_mb=cache_mb)
            fs.warm_cache("degree")
            for _ in range(2):  # the second pass hits the cache
                x, y = fs.fetch(ids)
                assert np.array_equal(bits(x), bits(want[ids])) and np.array_equal(y, np.asarray(synth.y)[ids])


@pytest.mark.neo4j
def test_batches_and_normaliser_over_compressed_rows(client, synth: GraphDataset, loaded) -> None:
    schema, record = loaded["int8"]
    want = reference(synth.x, "int8", record.quant())
    backend = Neo4jBackend(client, record, fanouts=[5, 5], batch_size=128, num_loader_threads=1, cache_mb=0.1)
    batch = next(iter(backend.make_loader(backend.split_nodes("train"), shuffle=False, seed=0)))
    assert torch.equal(batch.x.view(torch.int32), torch.from_numpy(want[batch.n_id.numpy()]).view(torch.int32))
    assert backend.normalize_features("standard") == "standard"
    batch = next(iter(backend.make_loader(backend.split_nodes("train"), shuffle=False, seed=0)))
    x64 = np.asarray(synth.x, np.float64)  # the statistics are the source's
    expect = (want[batch.n_id.numpy()] - x64.mean(0)) / np.where(x64.std(0) > 0, x64.std(0), 1.0)
    np.testing.assert_allclose(batch.x.numpy(), expect, rtol=1e-5, atol=1e-5)


@pytest.mark.neo4j
@pytest.mark.parametrize("fmt", FORMATS)
def test_rows_decoded_at_the_step_are_those_decoded_at_fetch(client, synth: GraphDataset, loaded, fmt: str) -> None:
    """``--decode_rows step``: a queued batch holds the stored bytes (1-2 per value), the step gets the very floats
    an immediate decode gives, on both read paths and through the normaliser, which then runs after the decode.
    ``layer``: the step gets the stored bytes themselves (EncodedRows), whose decode, normaliser included, is again
    those floats."""
    schema, record = loaded[fmt]
    width = row_bytes(record.feature_encoding, record.num_features)
    assert width < 4 * record.num_features
    for access in (Neo4jAccess(use_procedures=True, adj_prop="nbrs"), Neo4jAccess.cypher()):
        got = {}
        for mode in ("fetch", "step", "layer"):
            backend = Neo4jBackend(client, record, fanouts=[5, 5], batch_size=256, num_loader_threads=1,
                                   access=access, decode_rows=mode)
            assert backend.feature_store.defers_decode == (mode != "fetch")
            assert backend.rows_to_layer == (mode == "layer")
            backend.normalize_features("standard")
            loader = backend.make_loader(backend.split_nodes("train"), shuffle=True, seed=3)
            queued = loader._load(list(range(64)))  # what a prefetch thread leaves in the queue
            assert queued.x.dtype == (torch.float32 if mode == "fetch" else torch.uint8)
            assert queued.x.shape[1] == (record.num_features if mode == "fetch" else width)
            got[mode] = [(b.n_id, b.x, getattr(b, "t_decode", None)) for b in loader]
        assert len(got["fetch"]) == len(got["step"]) == len(got["layer"]) > 1
        for (n_f, x_f, t_f), (n_s, x_s, t_s), (n_l, x_l, _) in zip(got["fetch"], got["step"], got["layer"]):
            assert torch.equal(n_f, n_s) and torch.equal(n_f, n_l) and x_s.dtype == torch.float32
            assert isinstance(x_l, EncodedRows) and x_l.codes.dtype == torch.uint8 and x_l.codes.shape[1] == width
            assert torch.equal(x_f.view(torch.int32), x_s.view(torch.int32))
            assert torch.equal(x_f.view(torch.int32), x_l.decoded().view(torch.int32))
            assert t_f is None and t_s >= 0


@pytest.mark.neo4j
def test_decode_at_the_step_says_when_there_is_nothing_to_defer(client, synth: GraphDataset, loaded,
                                                                  loaded_dataset, caplog) -> None:
    _, _, dense = loaded_dataset("cora", "dense")
    _, int8 = loaded["int8"]
    for record, cache_mb, why in ((dense, 0.0, "stored float32-le, not compressed"),
                                  (int8, 0.1, "the feature cache holds decoded rows")):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            backend = Neo4jBackend(client, record, fanouts=[5], batch_size=64, num_loader_threads=1,
                                   cache_mb=cache_mb, decode_rows="step")
        assert not backend.feature_store.defers_decode
        assert any("--decode_rows step has nothing to defer" in r.message and why in r.message
                   for r in caplog.records), caplog.text
        batch = next(iter(backend.make_loader(backend.split_nodes("train"), shuffle=False, seed=0)))
        assert batch.x.dtype == torch.float32


@pytest.mark.neo4j
def test_a_load_keeps_its_encoding(client, synth: GraphDataset, loaded) -> None:
    schema, _ = loaded["float16"]
    with pytest.raises(UserError, match=r"stored with feature encoding float16-le, not uint8-affine "
                                        r"\(--feature_format int8\); pass --reset"):
        ensure_loaded(client, synth, schema, LoadConfig(progress=False, feature_format="int8"))
    again = ensure_loaded(client, synth, schema, LoadConfig(progress=False, feature_format="auto"))
    assert again.status == "already loaded"


@pytest.mark.neo4j
@pytest.mark.slow  # keeps CI under 25 min; RUN_SLOW=1 runs it
def test_cora_accuracy_within_tolerance_of_float32(client, loaded_dataset, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    acc = {}
    for fmt in ("dense", *FORMATS):
        _, _, record = loaded_dataset("cora", fmt)
        backend = Neo4jBackend(client, record, fanouts=[5, 5], batch_size=64, num_loader_threads=1)
        cfg = TrainConfig(dataset=record.name, fanouts=(5, 5), num_layers=2, hidden_channels=32, batch_size=64,
                          lr=0.01, epochs=8, seed=0, log_dir=str(tmp_path / "logs"),
                          checkpoint_dir=str(tmp_path / "ckpt"), run_name=f"cora_{fmt}", num_loader_threads=1)
        acc[fmt] = train(backend, cfg)["test_acc_at_best_val"]
    assert acc["dense"] > 0.7, acc
    for fmt in FORMATS:
        assert abs(acc[fmt] - acc["dense"]) <= 0.02, acc


@pytest.mark.neo4j
def test_rows_decoded_in_the_first_layer_train_the_same_run(client, synth: GraphDataset, loaded, tmp_path: Path) -> None:
    """``--decode_rows layer`` trains, step for step, the run ``fetch`` trains: the same losses, bit for bit (dense
    rows: both take the chunked first layer), with dropout and the normaliser on."""
    _, record = loaded["int8"]
    losses = {}
    for mode in ("fetch", "layer"):
        backend = Neo4jBackend(client, record, fanouts=[5, 5], batch_size=128, num_loader_threads=1, decode_rows=mode)
        cfg = TrainConfig(dataset=record.name, fanouts=(5, 5), num_layers=2, hidden_channels=32, batch_size=128,
                          lr=0.01, epochs=2, seed=0, dropout=0.5, normalize_features="standard",
                          log_dir=str(tmp_path / "logs"), checkpoint_dir=str(tmp_path / "ckpt"), run_name=mode,
                          num_loader_threads=1)
        train(backend, cfg)
        events = [json.loads(line) for line in (tmp_path / "logs" / mode / "rank0.jsonl").read_text().splitlines()]
        losses[mode] = [e["loss"] for e in events if e["event"] == "step"]
    assert len(losses["fetch"]) > 10 and losses["fetch"] == losses["layer"]


# ------------------------------------------------------------------------------ offline import (own server)
@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_offline_import_rows_read_back_bit_exact(tmp_path: Path, synth: GraphDataset, fmt: str) -> None:
    server = LocalNeo4j(root=tmp_path / "neo4j", lib=LocalNeo4j().lib)
    server.start(heap="512m", pagecache="128m")
    try:
        info = server.connection_info()
        with connect(Neo4jSettings(uri=info["uri"], password=info["password"])) as own:
            schema = GraphSchema.for_dataset(f"compress_{fmt}_{uuid.uuid4().hex[:6]}")
            report = ensure_loaded(own, synth, schema, LoadConfig(method="import", progress=False, feature_format=fmt),
                                   server=server)
            assert report.method == "import"
            record = require_loaded(own, schema.dataset)
            assert record.feature_encoding == FORMATS[fmt]
            want = reference(synth.x, fmt, record.quant())
            ids = np.arange(synth.num_nodes)
            x, _ = Neo4jFeatureStore.from_record(own, record).fetch(ids)
            assert np.array_equal(bits(x), bits(want))
    finally:
        server.stop()
