"""Benchmark (not a test): evaluate the SAME trained models on several backends.

    python bench/cross_eval.py --dataset amazon_cs --checkpoint data/checkpoints/<run>/checkpoint.pt ...
        [--split test] [--repeats 2] [--batch_size 512]

Why: two training runs on two backends differ in their sampled neighbourhoods, so their
accuracies differ by training-trajectory noise as well as by any real difference.  Evaluating one
fixed set of weights on both backends removes the trajectory: if the backends sample and fetch
equivalently, each model scores the same on both up to sampling noise (shown by ``--repeats``
evaluations with different sampling seeds); a gap larger than that points at a bug in a backend's
sampling, features, labels or split.  Backends: the full graph in memory and the Neo4j server
(``NEO4J_*`` or the local one), one process, no torch.distributed.  Fanouts and model shape come
from each checkpoint's run (its ``identity`` plus the ``--fanouts`` given here).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch


from src.in_memory.full_graph import FullGraphBackend
from src.neo4jdb.backend import Neo4jBackend
from src.client import connect
from src.data.sources import load_dataset
from src.core.errors import UsageError, UserError, run_cli
from src.neo4jdb.load.records import require_loaded
from src.train.evaluate import evaluate
from src.train.model import model_from_identity


def load_model(path: Path, num_features: int, num_classes: int) -> tuple[torch.nn.Module, str]:
    """The trained model and the feature normalisation it was trained with (none for older checkpoints)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    ident = state["identity"]
    model = model_from_identity({**ident, "num_features": num_features, "num_classes": num_classes})
    model.load_state_dict(state["model"])
    return model.eval(), ident.get("normalize_features", "none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset, loaded in Neo4j too")
    parser.add_argument("--checkpoint", nargs="+", required=True, help="checkpoint.pt files of trained runs")
    parser.add_argument("--fanouts", default="10,10", help="fanouts for evaluation (default: %(default)s)")
    parser.add_argument("--split", default="test", choices=("val", "test"), help="split (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="evaluations per model and backend (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=512, help="eval batch size (default: %(default)s)")
    args = parser.parse_args()
    try:
        fanouts = [int(k) for k in args.fanouts.split(",")]
    except ValueError:
        raise UsageError(f"--fanouts must be a comma list of integers (got {args.fanouts!r})") from None
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1 (got {args.repeats})")
    paths = [Path(p) for p in args.checkpoint]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"checkpoint(s) not found: {', '.join(missing)}")
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset)
    common = dict(fanouts=fanouts, batch_size=args.batch_size, num_loader_threads=2)
    memory = FullGraphBackend(ds, **common)
    client = connect(max_pool_size=4)  # NEO4J_* environment, else the local server
    record = require_loaded(client, ds.name)
    neo4j = Neo4jBackend(client, record, **common)
    if not torch.equal(memory.split_nodes(args.split), neo4j.split_nodes(args.split)):
        raise UserError(f"the {args.split} split in Neo4j differs from the dataset file: reload "
                        f"{ds.name} with loaders/load_into_neo4j.py --reset")
    rows = []
    for path in paths:
        model, normalization = load_model(path, memory.num_features, memory.num_classes)
        for backend in (memory, neo4j):
            backend.normalize_features(normalization)
            accs = []
            start = time.perf_counter()
            for r in range(args.repeats):
                accs.append(evaluate(model, backend, args.split, seed=1000 + r)["acc"])
            spread = statistics.pstdev(accs) if len(accs) > 1 else 0.0
            rows.append(f"| {path.parent.name} | {backend.name} | {' '.join(f'{a:.4f}' for a in accs)} | "
                        f"{statistics.mean(accs):.4f} | {spread:.4f} | {time.perf_counter() - start:.0f} |")
            print(rows[-1], flush=True)
    neo4j.close()
    print(f"\n{args.dataset}, split {args.split}, fanouts {args.fanouts}, {args.repeats} sampling seeds each\n")
    print("| trained by run | evaluated on | accuracy per sampling seed | mean | std | seconds |")
    print("|---|---|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    run_cli(main)
