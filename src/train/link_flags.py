"""The training flags of ``--task link`` (src/train/link.py), added to every training script's parser."""
from __future__ import annotations

import argparse
from typing import Any

from src.core.edge_split import EdgeSplitSpec
from src.core.errors import UsageError
from src.train.config import TrainConfig
from src.train.link_model import DECODERS

TASKS = ("node", "link")
NEGATIVE_SAMPLING = ("uniform", "degree")
_D = TrainConfig()


def add_link_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("link prediction (--task link)")

    def arg(name: str, help: str, **kwargs: Any) -> None:
        g.add_argument(name, help=f"{help} (default: %(default)s)", **kwargs)

    arg("--task", "node = node classification; link = link prediction on the dataset's edge split (Neo4j: "
        "stored by loaders/edge_split.py; in-memory: computed from the same flags), --batch_size positive "
        "pairs per batch", choices=TASKS, default=_D.task)
    arg("--edge_split", "TRAIN,VAL,TEST fractions of the node pairs (undirected pairs kept together); validation "
        "and test pairs are never message-passing edges", default=_D.edge_split)
    arg("--edge_split_seed", "seed of the edge split", type=int, default=_D.edge_split_seed)
    arg("--neg_ratio", "negative pairs drawn per positive pair in training (binary labels)", type=float,
        default=_D.neg_ratio)
    arg("--neg_sampling", "how training negatives' endpoints are drawn: uniform over the nodes, or proportional "
        "to their degree in the training graph", choices=NEGATIVE_SAMPLING, default=_D.neg_sampling)
    arg("--decoder", "pair scorer on the encoder's embeddings: dot = inner product (GAE), mlp = MLP over their "
        "element-wise product", choices=DECODERS, default=_D.decoder)
    arg("--eval_negatives", "fixed negatives per validation/test positive for MRR and Hits@K (the first also "
        "pairs with it for ROC-AUC and AP)", type=int, default=_D.eval_negatives)
    arg("--hits_k", "K of Hits@K", type=int, default=_D.hits_k)


def check_link_flags(flags: dict[str, Any]) -> None:
    """One line per bad value, before anything is opened."""
    if flags["task"] != "link":
        return
    EdgeSplitSpec.parse(flags["edge_split"], flags["edge_split_seed"])
    if not flags["neg_ratio"] > 0:
        raise UsageError(f"--neg_ratio must be > 0 negatives per positive (got {flags['neg_ratio']:g}): e.g. 1")
    if flags["eval_negatives"] < 1:
        raise UsageError(f"--eval_negatives must be >= 1 (got {flags['eval_negatives']})")
    if not 1 <= flags["hits_k"] <= flags["eval_negatives"]:
        raise UsageError(f"--hits_k must be in 1..--eval_negatives ({flags['eval_negatives']}), got {flags['hits_k']}")
