#!/usr/bin/env python3
"""Write a finished run's predictions back: to the nodes in Neo4j, or to a file for the other backends.

  python predict.py --run_name papers-run --write_property predicted_class --write_proba class_proba
  python predict.py --run_name papers-run --where "n.year >= 2000" --write_embedding gnn_embedding

Loads the run's last checkpoint (data/checkpoints/<run>/) and its flags (logs/<run>/rank0.jsonl),
opens the run's backend and predicts every node (or those the Cypher predicate on n selects,
Neo4j only) with the run's fanouts and batch size. Neo4j: the predicted class (the class value
itself for a registered graph, e.g. "Theory"; else the class index), and optionally the class
probabilities and the final-layer embedding, are SET on the nodes in batched transactions; a
killed write-back resumes where it stopped when re-run, a re-run of a finished one overwrites the
same properties, nothing else is touched. In-memory and Ladybug runs write an .npz (ids, pred,
proba, embedding) to --output; Ladybug runs also SET them as columns of the node table in the run's
database file (added when missing; a re-run overwrites only those columns). A heterogeneous run
(--target_type) predicts its target type's nodes, written back or to the .npz the same way. This script only wires flags to src/train/predict.py and
src/neo4jdb/write_back.py.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from src.core.errors import ArgumentParser, UsageError, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--run_name", required=True, help="the finished training run whose checkpoint predicts")
    p.add_argument("--log_dir", default="logs", help="where the run's logs are (default: %(default)s)")
    p.add_argument("--checkpoint_dir", default=None,
                   help="where the run's checkpoint is (default: the run's own --checkpoint_dir)")
    p.add_argument("--write_property", default="predicted_class",
                   help="node property for the predicted class (default: %(default)s)")
    p.add_argument("--write_proba", default=None, help="node property for the class probabilities (LIST<FLOAT>)")
    p.add_argument("--write_embedding", default=None,
                   help="node property for the final-layer embedding (the last layer's input)")
    p.add_argument("--embedding_format", choices=("list", "bytes"), default="list",
                   help="embedding as LIST<FLOAT> or packed little-endian float32 bytes (default: %(default)s)")
    p.add_argument("--where", default=None,
                   help="Cypher predicate on n choosing the nodes to predict, e.g. \"n.year >= 2000\" "
                        "(Neo4j only; read-only, no ';' or clauses)")
    p.add_argument("--output", default=None,
                   help="in-memory and Ladybug runs: the .npz to write (default: data/predictions/<run>.npz)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from src.train.cli import configure_console_logging
    from src.train.predict import FileWriter, load_model, predict, predict_seed, read_run, run_backend

    configure_console_logging()
    logging.getLogger("neo4j").setLevel(logging.CRITICAL)
    t0 = time.perf_counter()
    info = read_run(args.log_dir, args.run_name)
    if args.where is not None and info.backend != "neo4j":
        raise UsageError(f"--where is a Cypher predicate: it applies to Neo4j runs, not to this {info.backend} run")
    overrides = {"run_name": args.run_name, "log_dir": args.log_dir}
    if args.checkpoint_dir:
        overrides["checkpoint_dir"] = args.checkpoint_dir
    opened, cfg, backend_args = run_backend(info, overrides)
    ladybug = None
    with opened as backend:
        cfg.normalize_features = backend.normalize_features(cfg.normalize_features)
        model, epoch = load_model(cfg, backend)
        names = {"--write_property": args.write_property, "--write_proba": args.write_proba,
                 "--write_embedding": args.write_embedding}
        if info.backend == "neo4j":
            from src.neo4jdb.write_back import Neo4jWriter, WriteTarget, check_properties, select_ids

            if cfg.target_type:  # a heterogeneous dataset: the target type's nodes
                from src.neo4jdb.hetero.schema import hetero_record

                target = WriteTarget.of_hetero(backend.schema, hetero_record(backend.client, cfg.dataset) or {})
            else:
                target = WriteTarget.of_record(backend.record)
            props = check_properties(target, names)
            ids = select_ids(backend.client, target, args.where)
            chunks = -(-len(ids) // backend.batch_size)
            request = {"where": args.where or "", "num_nodes": len(ids), "num_chunks": chunks, "epoch": epoch,
                       "batch_size": backend.batch_size, "embedding_format": args.embedding_format}
            writer = Neo4jWriter(backend.client, target, args.run_name, props, request=request,
                                 embedding_format=args.embedding_format)
        else:
            import numpy as np

            ids = np.arange(backend.num_nodes, dtype=np.int64)
            record = getattr(backend, "record", None)
            classes = list(record.properties.get("class_values") or []) if record is not None else None
            writer = FileWriter(Path(args.output or f"data/predictions/{args.run_name}.npz"), classes)
            if info.backend == "ladybug":
                from src.ladybugdb.client import path_from_args
                from src.ladybugdb.write_back import check_columns

                ladybug = (path_from_args(backend_args, cfg.dataset), backend.schema, check_columns(backend.schema, names))
        done, skipped = predict(model, backend, ids, writer, seed=predict_seed(cfg), proba=args.write_proba is not None,
                                embedding=args.write_embedding is not None, progress=not args.no_progress)
        line = writer.finish()
    if ladybug is not None:  # the backend held the file read-only: write now that it is closed
        from src.ladybugdb.write_back import write_predictions

        line += " " + write_predictions(*ladybug, writer.arrays(), embedding_format=args.embedding_format)
    resumed = f", {skipped} already written by an interrupted run" if skipped else ""
    print(f"{args.run_name}: predicted {done} nodes{resumed} with the checkpoint of epoch {epoch} "
          f"({info.backend} backend) in {time.perf_counter() - t0:.1f} s; {line}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
