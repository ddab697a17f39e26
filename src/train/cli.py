"""Command-line flags shared by every training entry script, and their validation.

Why here and not in each script: ``main-neo4j-backend.py`` and ``in-memory-alternative.py``
must accept the same flags with the same meaning, so benchmark jobs can swap backends by
swapping the script name.  Entry scripts add their own backend flags next to these.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Any, Mapping

from src.core import normalize
from src.core.hetero_fanouts import per_hop_max
from src.core.errors import UsageError, check_writable_dir
from src.train.config import TrainConfig
from src.train.link_flags import add_link_args, check_link_flags
from src.train.metrics import CHOICES
from src.train.model import MODELS
from src.train.run_log import check_tensorboard

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_D = TrainConfig()  # the defaults live in one place
MAX_RUN_NAME_BYTES = 200  # the run is a folder name (at most 255 bytes on Linux), with room for temporary names


def add_training_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the shared training flags to ``parser`` (one-line help each, defaults shown)."""
    g = parser.add_argument_group("training (shared by all backends)")

    def arg(name: str, help: str, **kwargs: Any) -> None:
        g.add_argument(name, help=f"{help} (default: %(default)s)", **kwargs)

    arg("--dataset", "dataset name, e.g. cora, citeseer, ogbn-arxiv", default=_D.dataset)
    arg("--dataset_root_dir", "directory holding the datasets; None = the project's usual places",
        default=_D.dataset_root_dir)
    arg("--master_addr", "address of rank 0 for the gloo rendezvous", default=_D.master_addr)
    arg("--master_port", "TCP port of rank 0 for the rendezvous", type=int, default=_D.master_port)
    arg("--num_nodes", "number of machines (= ranks, one per machine) in the job",
        type=int, default=_D.num_nodes)
    arg("--node_rank", "rank of this machine, 0..num_nodes-1", type=int, default=_D.node_rank)
    arg("--num_loader_threads", "prefetch threads per rank preparing the next batches in the background",
        type=int, default=_D.num_loader_threads)
    arg("--fetch_rows", "when the prefetch threads fetch a training batch's feature rows: ahead (as soon as "
        "sampled, fastest) or after_step (they still sample ahead, but hold the rows of at most "
        "--num_loader_threads batches, the step's included: one batch's rows fewer, for a tight memory limit; "
        "with one thread no fetch runs beside the step, nor overlaps it)", choices=("ahead", "after_step"),
        default=_D.fetch_rows)
    arg("--batch_size", "seed nodes per mini-batch", type=int, default=_D.batch_size)
    arg("--num_workers", "torch intra-op threads per rank for the model; 0 = torch's default",
        type=int, default=_D.num_workers)
    arg("--concurrency", "max concurrent requests per rank to the graph backend",
        type=int, default=_D.concurrency)
    arg("--epochs", "number of training epochs", type=int, default=_D.epochs)
    arg("--fanouts", "neighbours sampled per hop, comma list with one entry per layer; with --target_type also "
        "per relationship type: 'writes:10,5;cites:5,5' or a JSON object (0: never sample that type at that hop)",
        default=",".join(map(str, _D.fanouts)))
    arg("--target_type", "heterogeneous dataset: the labelled node type to classify (a typed GraphSAGE, "
        "HeteroConv of SAGEConvs, then trains on it); none: a homogeneous dataset", default=_D.target_type)
    arg("--featureless", "heterogeneous dataset: input of node types without features: embedding (a learnable "
        "row per node), constant (a single learnable row per type) or degree (log1p of the node's degree per "
        "relationship type, counted where the graph is stored)", choices=("embedding", "constant", "degree"),
        default=_D.featureless)
    arg("--add_reverse", "heterogeneous dataset: also sample every relationship type backwards as rev_<rel> (as "
        "PyG's ToUndirected), so that types a relationship only leaves receive messages too; nothing is written "
        "to the graph (the partitioned backend needs partitions made with partition_graph.py --add_reverse)",
        action="store_true")
    arg("--model", "the GNN (PyG's models, trimmed per layer): sage = GraphSAGE (mean), gcn = GCN, gat = GAT, "
        "gin = GIN", choices=MODELS, default=_D.model)
    arg("--heads", "attention heads of --model gat (concatenated in hidden layers: --hidden_channels must be "
        "a multiple)", type=int, default=_D.heads)
    arg("--hidden_channels", "hidden width of the model", type=int, default=_D.hidden_channels)
    arg("--num_layers", "model layers (= number of fanouts)", type=int, default=_D.num_layers)
    arg("--no_trim", "compute every layer on every sampled node instead of trimming each layer to the hops "
        "it needs (same results, slower; for comparisons)", dest="trim", action="store_false")
    arg("--lr", "Adam learning rate", type=float, default=_D.lr)
    arg("--weight_decay", "Adam L2 penalty on all weights; helps with few labels and wide features "
        "(e.g. 5e-4 on coauthor_phy)", type=float, default=_D.weight_decay)
    arg("--dropout", "dropout probability in [0, 1)", type=float, default=_D.dropout)
    arg("--eval_every", "evaluate on val and test every N epochs (and after the last epoch)",
        type=int, default=_D.eval_every)
    arg("--metric", "validation metric that picks the best epoch and drives --patience (accuracy, macro-F1 "
        "and, for binary targets, ROC-AUC are all logged); auto = the dataset's default (roc_auc for two "
        "classes, else accuracy)", choices=CHOICES, default=_D.metric)
    arg("--patience", "stop after this many evaluations without a better validation metric (the best "
        "epoch's weights are kept in <checkpoint_dir>/<run_name>/best.pt); 0 = run every epoch",
        type=int, default=_D.patience)
    arg("--max_steps_per_epoch", "stop each epoch after this many steps (bounded runs on huge graphs); "
        "0 = the whole train split", type=int, default=_D.max_steps_per_epoch)
    arg("--max_eval_seeds", "evaluate val/test on a fixed random subset of this many nodes each; "
        "0 = the whole split", type=int, default=_D.max_eval_seeds)
    arg("--log_dir", "run logs go to <log_dir>/<run_name>/rank<k>.jsonl and .log", default=_D.log_dir)
    arg("--run_name", "name of the run for logs and checkpoints; an existing run is refused unless --resume "
        "or --overwrite; None = a new <dataset name>-<backend>-<timestamp>-<random> name", default=_D.run_name)
    arg("--checkpoint_dir", "checkpoints go to <checkpoint_dir>/<run_name>/ (written by rank 0)",
        default=_D.checkpoint_dir)
    arg("--resume", "continue run --run_name after its last checkpointed epoch (fresh if none)",
        action="store_true")
    arg("--overwrite", "replace the logs and checkpoint of an existing run --run_name instead of refusing",
        action="store_true")
    arg("--tensorboard", "also write the logged scalars (loss, metrics, seeds/s, times, RSS) as TensorBoard "
        "events to <DIR>/<run_name>/rank<k>/ (view with: tensorboard --logdir DIR); None = off",
        metavar="DIR", default=_D.tensorboard)
    arg("--seed", "random seed (model init, shuffling, sampling)", type=int, default=_D.seed)
    arg("--normalize_features", "feature preprocessing applied to every batch on every backend: row_l1 = PyG's "
        "NormalizeFeatures (rows sum to 1), row_l2 (unit rows), standard (zero mean, unit variance per column, "
        "from statistics stored with the dataset), auto = the dataset's recommendation (row_l1 for integer "
        "counts such as bag-of-words, else none)", choices=normalize.CHOICES, default=_D.normalize_features)
    arg("--collective_timeout_s", "how long a rank waits for its peers in a collective or request before "
        "it stops, naming the peer as crashed or hung (a crashed peer is noticed at once)",
        type=float, default=_D.collective_timeout_s)
    add_link_args(parser)
    return parser


def parse_training_config(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> TrainConfig:
    """Validate ``args`` into a :class:`TrainConfig`; raise :class:`UsageError` with one line.

    Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` set) those
    environment values override ``--node_rank/--num_nodes/--master_addr/--master_port``.
    """
    env = os.environ if env is None else env
    flags = dict(vars(args))
    if all(k in env for k in _TORCHRUN_ENV):
        flags.update(
            node_rank=_env_int(env, "RANK"),
            num_nodes=_env_int(env, "WORLD_SIZE"),
            master_addr=env["MASTER_ADDR"],
            master_port=_env_int(env, "MASTER_PORT"),
        )
    if flags.get("target_type"):  # per-type fanouts: checked against the dataset's types when it is opened
        fanouts = per_hop_max(str(flags["fanouts"]))
    else:
        fanouts = _parse_fanouts(str(flags["fanouts"]))
        flags["fanouts"] = ",".join(map(str, fanouts))
    _check(flags["batch_size"] > 0, f"--batch_size must be > 0 (got {flags['batch_size']})")
    _check(flags["epochs"] > 0, f"--epochs must be > 0 (got {flags['epochs']})")
    _check(flags["num_layers"] > 0, f"--num_layers must be > 0 (got {flags['num_layers']})")
    _check(
        len(fanouts) == flags["num_layers"],
        f"--fanouts has {len(fanouts)} entries but --num_layers is {flags['num_layers']}: "
        "give one fanout per layer",
    )
    _check(flags["hidden_channels"] > 0, f"--hidden_channels must be > 0 (got {flags['hidden_channels']})")
    _check(flags["lr"] > 0, f"--lr must be > 0 (got {flags['lr']})")
    _check(flags["weight_decay"] >= 0, f"--weight_decay must be >= 0 (got {flags['weight_decay']})")
    _check(0 <= flags["dropout"] < 1, f"--dropout must be in [0, 1) (got {flags['dropout']})")
    _check(flags["eval_every"] > 0, f"--eval_every must be > 0 (got {flags['eval_every']})")
    _check(flags["max_steps_per_epoch"] >= 0,
           f"--max_steps_per_epoch must be >= 0 (got {flags['max_steps_per_epoch']})")
    _check(flags["max_eval_seeds"] >= 0, f"--max_eval_seeds must be >= 0 (got {flags['max_eval_seeds']})")
    _check(flags["num_nodes"] >= 1, f"--num_nodes must be >= 1 (got {flags['num_nodes']})")
    _check(
        0 <= flags["node_rank"] < flags["num_nodes"],
        f"--node_rank must be in 0..{flags['num_nodes'] - 1} for --num_nodes {flags['num_nodes']} "
        f"(got {flags['node_rank']})",
    )
    _check(flags["num_workers"] >= 0, f"--num_workers must be >= 0 (0 = torch's default) (got {flags['num_workers']})")
    _check(not flags.get("add_reverse") or bool(flags.get("target_type")),
           "--add_reverse applies to heterogeneous datasets: give --target_type, or drop --add_reverse")
    _check(flags["heads"] >= 1, f"--heads must be >= 1 (got {flags['heads']})")
    _check(flags["model"] != "gat" or flags["hidden_channels"] % flags["heads"] == 0,
           f"--hidden_channels {flags['hidden_channels']} is not a multiple of --heads {flags['heads']}: "
           "GAT concatenates the heads of hidden layers")
    _check(flags["patience"] >= 0, f"--patience must be >= 0 (got {flags['patience']})")
    _check(flags["num_loader_threads"] >= 0,
           f"--num_loader_threads must be >= 0 (got {flags['num_loader_threads']})")
    _check(flags["concurrency"] >= 1, f"--concurrency must be >= 1 (got {flags['concurrency']})")
    _check(flags["collective_timeout_s"] > 0,
           f"--collective_timeout_s must be > 0 (got {flags['collective_timeout_s']})")
    _check(0 < flags["master_port"] < 65536, f"--master_port must be in 1..65535 (got {flags['master_port']})")
    _check(not flags["resume"] or flags["run_name"],
           "--resume needs --run_name naming the run to continue")
    _check(not (flags["resume"] and flags["overwrite"]),
           "--resume continues a run and --overwrite replaces it: pass one of them")
    if flags["dataset_root_dir"] is not None:
        _check(os.path.isdir(os.path.expanduser(flags["dataset_root_dir"])),
               f"--dataset_root_dir {flags['dataset_root_dir']} is not an existing folder: create it or "
               "leave the flag out to use the shared datasets and data/datasets")
    if flags["tensorboard"] is not None:
        check_writable_dir(flags["tensorboard"], "--tensorboard")
        check_tensorboard()
    if flags["run_name"] is not None:
        _check(_is_plain_name(flags["run_name"]),
               f"--run_name must be a plain name without '/' (got {flags['run_name']!r})")
        size = len(flags["run_name"].encode("utf-8"))
        _check(size <= MAX_RUN_NAME_BYTES,
               f"--run_name is {size} bytes long; a folder name holds at most {MAX_RUN_NAME_BYTES}: pick a shorter name")
    check_link_flags(flags)
    check_writable_dir(flags["log_dir"], "--log_dir")
    check_writable_dir(flags["checkpoint_dir"], "--checkpoint_dir")
    settings = {f.name: flags[f.name] for f in dataclasses.fields(TrainConfig) if f.name not in ("fanouts", "flags")}
    return TrainConfig(**settings, fanouts=fanouts, flags=flags)


def configure_console_logging(level: int = logging.INFO) -> None:
    """Entry scripts call this so library ``logging`` (progress notes, the summary) reaches stderr."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _check(ok: Any, message: str) -> None:
    if not ok:
        raise UsageError(message)


def _env_int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise UsageError(f"environment variable {key} must be an integer (got {env[key]!r})") from None


def _parse_fanouts(text: str) -> tuple[int, ...]:
    example = "give positive integers, one per layer, e.g. --fanouts 15,10,5"
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise UsageError(f"--fanouts is empty or has an empty entry ({text!r}): {example}")
    try:
        fanouts = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--fanouts has a non-integer entry ({text!r}): {example}") from None
    _check(all(k > 0 for k in fanouts), f"--fanouts entries must be > 0 ({text!r}): {example}")
    return fanouts


def _is_plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")
