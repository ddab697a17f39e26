"""Predictions written into the Ladybug database file of a run: one column per named property.

Why after inference, not per chunk as in Neo4j: the trainer's backend holds the file open read-only
(several processes may), and an embedded database has one writer; so ``predict.py`` predicts with
the read-only backend, closes it, then opens the file for writing. A property is a column of the
node table (added with ``ALTER TABLE`` when missing, replaced when it has another type); a re-run
overwrites only the named columns, never ``id``/``x``/``y``/``split``. Each batch is one statement,
so a killed write leaves whole batches and a re-run rewrites them all (the values are the same).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from src.core.errors import UsageError
from src.core.schema import GraphSchema, validate_identifier
from src.ladybugdb.client import LadybugClient

BATCH_ROWS = 5_000


def check_columns(schema: GraphSchema, names: dict[str, str | None]) -> dict[str, str]:
    """The properties to write (flag -> name), validated and none of the dataset's own columns."""
    own = {schema.id_prop, schema.x_prop, schema.y_prop, schema.split_prop}
    out = {flag: validate_identifier(name, flag) for flag, name in names.items() if name is not None}
    for flag, name in out.items():
        if name in own:
            raise UsageError(f"{flag} {name!r} is a column the dataset stores; choose another name, e.g. predicted_class")
    if len(set(out.values())) != len(out):
        raise UsageError(f"the write properties must differ ({', '.join(f'{k} {v}' for k, v in out.items())})")
    return out


def write_predictions(path: Path, schema: GraphSchema, columns: dict[str, str], arrays: dict[str, np.ndarray],
                      *, embedding_format: str = "list") -> str:
    """SET the predicted class (and probabilities, embedding) on the nodes of ``arrays['ids']``."""
    classes = arrays.get("classes")
    values: dict[str, tuple[str, list[Any]]] = {}
    pred = arrays["pred"]
    values["--write_property"] = ("STRING", [str(v) for v in classes[pred]]) if classes is not None else (
        "INT64", pred.astype(np.int64).tolist())
    if "--write_proba" in columns:
        values["--write_proba"] = ("DOUBLE[]", arrays["proba"].astype(float).tolist())
    if "--write_embedding" in columns:
        emb = arrays["embedding"].astype("<f4")
        values["--write_embedding"] = ("BLOB", [e.tobytes() for e in emb]) if embedding_format == "bytes" else (
            "FLOAT[]", emb.tolist())
    ids = arrays["ids"].astype(np.int64).tolist()
    with LadybugClient(path, read_only=False) as client:
        have = {row[1]: str(row[2]) for row in client.execute(f"CALL table_info('{schema.label}') RETURN *")}
        for flag, (kind, _) in values.items():
            col = columns[flag]
            if col in have and have[col] != kind:
                client.execute(f"ALTER TABLE `{schema.label}` DROP `{col}`")
            if have.get(col) != kind:
                client.execute(f"ALTER TABLE `{schema.label}` ADD `{col}` {kind}")
        sets = ", ".join(f"n.`{columns[flag]}` = r.v{k}" for k, flag in enumerate(values))
        query = f"UNWIND $rows AS r MATCH (n:`{schema.label}`) WHERE n.`{schema.id_prop}` = r.id SET {sets}"
        lists = [v for _, v in values.values()]
        for lo in range(0, len(ids), BATCH_ROWS):
            rows = [{"id": ids[i], **{f"v{k}": lists[k][i] for k in range(len(lists))}}
                    for i in range(lo, min(len(ids), lo + BATCH_ROWS))]
            client.execute(query, rows=rows)
    return f"and {', '.join(columns[f] for f in values)} to {len(ids)} :{schema.label} nodes of {path}"
