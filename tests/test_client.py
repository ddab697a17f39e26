"""src/client.py against the real server: round trips, clear errors, identifier validation."""
from __future__ import annotations

import time

import pytest

from src.client import Neo4jClient, Neo4jSettings, connect, quiet_params
from src.core.schema import validate_identifier
from src.core.errors import Neo4jUnavailable, UsageError
from src.core.ports import free_port


def test_write_then_read_round_trip(client: Neo4jClient, unique_label: str) -> None:
    payload = bytes(range(256))
    client.write(f"UNWIND $rows AS r CREATE (n:`{unique_label}` {{id: r.id, x: r.x}})",
                 rows=[{"id": i, "x": payload[i:]} for i in range(5)])
    try:
        recs = client.read(f"MATCH (n:`{unique_label}`) RETURN n.id AS id, n.x AS x ORDER BY id")
        assert [r["id"] for r in recs] == list(range(5))
        assert [bytes(r["x"]) for r in recs] == [payload[i:] for i in range(5)]
        assert client.count_nodes(unique_label) == 5
    finally:
        client.write(f"MATCH (n:`{unique_label}`) DETACH DELETE n")
    assert client.count_nodes(unique_label) == 0


def test_values_travel_as_parameters(client: Neo4jClient, unique_label: str) -> None:
    evil = "x'}) DETACH DELETE n //"
    client.write(f"CREATE (n:`{unique_label}` {{name: $name}})", name=evil)
    try:
        assert client.read(f"MATCH (n:`{unique_label}`) RETURN n.name AS v")[0]["v"] == evil
    finally:
        client.write(f"MATCH (n:`{unique_label}`) DETACH DELETE n")


def test_large_parameters_travel_exact_with_short_repr(client: Neo4jClient) -> None:
    """Bytes and lists reach the server unchanged through read_tx, while their repr (which the driver
    builds for every RUN) is a size, not megabytes of text."""
    blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
    rows = [{"i": i, "b": blob[:i]} for i in range(300)]
    params = quiet_params({"blob": blob, "rows": rows, "n": 3})
    assert len(repr(params)) < 100 and params["n"] == 3
    got = client.read_tx(lambda tx: tx.run("RETURN $blob AS blob, $rows AS rows", {"blob": blob}, rows=rows).single())
    assert got["blob"] == blob and got["rows"] == rows


def test_server_is_5_26(client: Neo4jClient) -> None:
    assert client.server_version().startswith("5.26.")


def test_wrong_password_is_one_clear_line(neo4j_settings: Neo4jSettings) -> None:
    bad = Neo4jSettings(uri=neo4j_settings.uri, user=neo4j_settings.user, password="definitely-wrong",
                        database=neo4j_settings.database)
    with pytest.raises(Neo4jUnavailable) as err:
        connect(bad)
    msg = str(err.value)
    assert "wrong password" in msg and "NEO4J_PASSWORD" in msg and "\n" not in msg
    assert "definitely-wrong" not in msg


def test_closed_port_fails_fast_with_hint() -> None:
    port = free_port()  # nothing listens here
    t0 = time.monotonic()
    with pytest.raises(Neo4jUnavailable) as err:
        connect(Neo4jSettings(uri=f"bolt://127.0.0.1:{port}", password="x"))
    assert time.monotonic() - t0 < 10
    assert "cannot reach" in str(err.value) and "jobs/neo4j.sh start" in str(err.value)


def test_unroutable_address_fails_within_bound() -> None:
    # 127.0.0.2 port 9 on loopback: refused or dropped; either way bounded by connect_timeout.
    t0 = time.monotonic()
    with pytest.raises(Neo4jUnavailable):
        connect(Neo4jSettings(uri="bolt://127.0.0.2:9", password="x"), connect_timeout=2.0)
    assert time.monotonic() - t0 < 10


def test_unknown_database(neo4j_settings: Neo4jSettings) -> None:
    bad = Neo4jSettings(uri=neo4j_settings.uri, user=neo4j_settings.user, password=neo4j_settings.password,
                        database="nosuchdb")
    with pytest.raises(Neo4jUnavailable) as err:
        connect(bad)
    assert "no database 'nosuchdb'" in str(err.value)


def test_bad_uri_scheme() -> None:
    with pytest.raises(UsageError) as err:
        connect(Neo4jSettings(uri="http://127.0.0.1:7474", password="x"))
    assert "bad Neo4j URI" in str(err.value)
    with pytest.raises(UsageError) as err:
        connect(Neo4jSettings(uri="localhost:7687", password="x"))
    assert "bad Neo4j URI" in str(err.value)


@pytest.mark.parametrize("name", ["a`b", "n) DETACH DELETE n //", "has space", "1abc", "", "x" * 65, "quote'd", 'dq"x', "é"])
def test_invalid_identifiers_rejected(name: str) -> None:
    with pytest.raises(UsageError):
        validate_identifier(name, "label")


@pytest.mark.parametrize("name", ["cora", "ogbn_arxiv", "_x1", "A" * 64])
def test_valid_identifiers_pass(name: str) -> None:
    assert validate_identifier(name) == name


def test_invalid_identifier_rejected_before_any_query(client: Neo4jClient, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    real = client.read_tx
    monkeypatch.setattr(client, "read_tx", lambda work: sent.append("query") or real(work))
    with pytest.raises(UsageError):
        client.count_nodes("x`) MATCH (m) DETACH DELETE m //")
    with pytest.raises(UsageError):
        client.count_relationships("T` ]->() DELETE r //")
    assert sent == []
    client.count_nodes("Valid_label")
    assert sent == ["query"]


def test_settings_repr_hides_password() -> None:
    s = Neo4jSettings(uri="bolt://x:1", password="topsecret")
    assert "topsecret" not in repr(s)
