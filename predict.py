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

Runs trained with --task link write predicted links instead (src/train/link_predict.py):
  python predict.py --run_name cora-link --top_k 10 --write_relationship PREDICTED_LINK
  python predict.py --run_name cora-link --pairs_query "MATCH (a:cora {id: 0}), (b:cora) RETURN a, b"
  python predict.py --run_name cora-link --pairs_file pairs.csv --write_relationship LINK_SCORE

Every node is embedded by the run's encoder over the graph as it is now (held-out edges included),
then each selected node (--where, or all) gets its --top_k best candidates among all nodes but
itself and the nodes it already shares a relationship with (--include_neighbours keeps those),
or each given pair gets its score. Neo4j: written as new relationships (a)-[:TYPE {score, rank}]->(b)
(score = the decoder's probability, rank 1 = best; pairs get score only) in batched, resumable
transactions; TYPE must be new to the database or this run's own from an earlier predict.py, and
a re-run with another request replaces only those relationships. Pairs are the dataset's dense
node ids: from a .npy [P, 2] or a two-column .csv (--pairs_file, the safest: no query runs), or from
a read-only Cypher query returning two columns of the dataset's nodes or ids (--pairs_query: refused
unless it only reads, by its text and by the server's plan, and run in a read transaction). Other
backends write an .npz (src, dst, score, rank) to --output.
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
    g = p.add_argument_group("runs trained with --task link")
    g.add_argument("--top_k", type=int, default=None, help="predicted links per selected node (default: 10)")
    g.add_argument("--include_neighbours", action="store_true",
                   help="keep nodes a node already shares a relationship with among its candidates")
    g.add_argument("--write_relationship", default=None,
                   help="Neo4j: relationship type of the predicted links, new to the database (default: PREDICTED_LINK)")
    g.add_argument("--pairs_query", default=None,
                   help="Neo4j: score these pairs instead: a read-only Cypher query returning two columns "
                        "(nodes of the dataset or their ids)")
    g.add_argument("--pairs_file", default=None,
                   help="score these pairs instead: a .npy [P, 2] or a .csv of two columns of dense node ids")
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
    link_flags = [f for f in ("top_k", "write_relationship", "pairs_query", "pairs_file") if getattr(args, f) is not None]
    link_flags += ["include_neighbours"] if args.include_neighbours else []
    if cfg.task == "link":
        return predict_links(args, info, cfg, opened, t0)
    if link_flags:
        raise UsageError(f"--{link_flags[0]} applies to runs trained with --task link; run {args.run_name!r} "
                         "classifies nodes")
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


def predict_links(args: argparse.Namespace, info, cfg, opened, t0: float) -> int:
    """A --task link run: top-k links per node, or scores of given pairs, to Neo4j relationships or an .npz."""
    import numpy as np

    from src.train.link_predict import (PAIR_CHUNK, LinkFileWriter, embed_nodes, load_link_model, predict_pairs, predict_top_k,
                                        read_pairs_file)
    from src.train.predict import predict_seed

    node_flags = [f for f, default in (("write_proba", None), ("write_embedding", None),
                                       ("write_property", "predicted_class")) if getattr(args, f) != default]
    if node_flags:
        raise UsageError(f"--{node_flags[0]} writes node predictions; run {args.run_name!r} trained --task link: "
                         "use --top_k, --pairs_query or --pairs_file")
    if args.pairs_query is not None and args.pairs_file is not None:
        raise UsageError("give --pairs_query or --pairs_file, not both")
    pairs_mode = args.pairs_query is not None or args.pairs_file is not None
    if pairs_mode and (args.top_k is not None or args.include_neighbours or args.where is not None):
        raise UsageError("--top_k, --include_neighbours and --where choose top-k candidates; they do not apply to "
                         "--pairs_query/--pairs_file")
    k = 10 if args.top_k is None else args.top_k
    if k < 1:
        raise UsageError(f"--top_k must be >= 1 (got {k})")
    neo4j = info.backend == "neo4j"
    if not neo4j and (args.pairs_query is not None or args.write_relationship is not None):
        raise UsageError(f"--{'pairs_query' if args.pairs_query is not None else 'write_relationship'} applies to Neo4j "
                         f"runs; this {info.backend} run writes an .npz (--output)")
    # what can be checked without the database, before the backend opens
    from src.core.schema import validate_identifier

    validate_identifier(args.write_relationship or "PREDICTED_LINK", "--write_relationship")
    if args.pairs_file is not None and Path(args.pairs_file).suffix not in (".npy", ".csv"):
        raise UsageError(f"--pairs_file {args.pairs_file}: give a .npy [P, 2] array or a .csv of two id columns")
    if args.where is not None:
        from src.neo4jdb.write_back import check_predicate

        check_predicate(args.where)
    if args.pairs_query is not None:
        from src.neo4jdb.link_write_back import check_pairs_query

        check_pairs_query(args.pairs_query)
    with opened as backend:
        cfg.normalize_features = backend.normalize_features(cfg.normalize_features)
        model, epoch = load_link_model(cfg, backend)
        if neo4j:
            from src.neo4jdb.link_write_back import (Neo4jLinkWriter, check_relationship_type, fingerprint,
                                                     read_pairs_query)
            from src.neo4jdb.write_back import select_ids

            rel_type = check_relationship_type(backend.client, backend.record, args.run_name,
                                               args.write_relationship or "PREDICTED_LINK")
        if args.pairs_query is not None:
            pairs = read_pairs_query(backend.client, backend.record, args.pairs_query)
        elif args.pairs_file is not None:
            pairs = read_pairs_file(args.pairs_file, backend.num_nodes)
        ids = (select_ids(backend.client, backend.schema, args.where) if neo4j
               else np.arange(backend.num_nodes, dtype=np.int64))
        chunk = backend.batch_size
        if neo4j:
            items = pairs if pairs_mode else ids
            n_chunks = -(-len(items) // (PAIR_CHUNK if pairs_mode else chunk))
            request = {"epoch": epoch, "top_k": 0 if pairs_mode else k, "include_neighbours": args.include_neighbours,
                       "where": args.where or "", "items": len(items), "num_chunks": n_chunks,
                       "chunk": PAIR_CHUNK if pairs_mode else chunk, "fingerprint": fingerprint(items)}
            writer = Neo4jLinkWriter(backend.client, backend.record, args.run_name, rel_type, request=request)
        else:
            writer = LinkFileWriter(Path(args.output or f"data/predictions/{args.run_name}-links.npz"))
        progress = not args.no_progress
        emb_ids = np.unique(pairs) if pairs_mode else np.arange(backend.num_nodes, dtype=np.int64)
        emb = embed_nodes(model, backend, emb_ids, seed=predict_seed(cfg), progress=progress)
        if pairs_mode:
            done, skipped = predict_pairs(model, emb, emb_ids, pairs, writer, progress=progress)
            what = "pairs"
        else:
            done, skipped = predict_top_k(model, emb, ids, k, writer, chunk=chunk, progress=progress,
                                          neighbours=None if args.include_neighbours else backend.linked_nodes)
            what = f"nodes' top {k}"
        line = writer.finish()
    resumed = f", {skipped} already written by an interrupted run" if skipped else ""
    print(f"{args.run_name}: scored {done} {what}{resumed} with the checkpoint of epoch {epoch} "
          f"({info.backend} backend) in {time.perf_counter() - t0:.1f} s; {line}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
