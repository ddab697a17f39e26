"""The server's share of ``gnn.*`` calls (src/neo4jdb/call_times.py), against a real Neo4j.

The per-batch breakdown (bench/batch_breakdown.py) splits a call's wall time into the server's
time from Bolt's result summary and the rest; that split must be there for every procedure the
trainer calls, counted per thread, and never exceed the wall time it is part of.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from src.neo4jdb import call_times, procedures


@pytest.fixture
def cora(client, loaded_dataset):
    if not procedures.has_procedures(client):
        pytest.skip("the server has no gnn.* procedures")
    return loaded_dataset("cora")


def test_sampling_and_rows_record_server_wall_bytes_and_decode(client, cora) -> None:
    ds, schema, record = cora
    call_times.take()
    seeds = np.arange(64, dtype=np.int64)
    hops = procedures.sample_hops(client, schema, seeds, [5, 5], np.array([7, 11], np.int64))
    ids = np.concatenate([seeds, *(h.new_nodes for h in hops)])
    x, _ = procedures.fetch_rows(client, schema, ids, num_features=ds.num_features,
                                 encoding=record.feature_encoding, quant=record.feature_quant)
    times = call_times.take()
    assert set(times.server_s) == {"gnn.sampleHops", "gnn.fetchRows"}
    for proc in times.server_s:
        assert 0.0 <= times.server_s[proc] <= times.wall_s[proc]
        assert times.answer_bytes[proc] > 0
    assert times.answer_bytes["gnn.fetchRows"] >= len(ids)  # every row's stored bytes came over Bolt
    assert times.decode_s > 0
    assert np.array_equal(x, ds.features(ids))
    assert call_times.take().server_s == {}  # take() starts new counts


def test_counts_are_per_thread(client, cora) -> None:
    _, schema, _ = cora
    call_times.take()
    seen: dict[str, dict] = {}

    def other() -> None:
        procedures.sample_hops(client, schema, np.arange(8, dtype=np.int64), [3], np.array([5], np.int64))
        seen["other"] = dict(call_times.take().server_s)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert set(seen["other"]) == {"gnn.sampleHops"}
    assert call_times.take().server_s == {}  # this thread made no call
