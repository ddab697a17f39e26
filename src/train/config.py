"""``TrainConfig``: the validated training settings every backend's run shares (built by src/train/cli.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from src.train import distributed


@dataclass
class TrainConfig:
    """Validated training settings (built from flags by ``src.train.cli.parse_training_config``).

    ``num_nodes``/``node_rank`` are the world size and this process's rank (one rank per
    machine).  ``flags`` keeps every raw flag, backend-specific ones included, for the log.
    """

    dataset: str = "cora"
    dataset_root_dir: str | None = None
    master_addr: str = "localhost"
    master_port: int = 29500
    num_nodes: int = 1
    node_rank: int = 0
    num_loader_threads: int = 2
    fetch_rows: str = "ahead"  # ahead | after_step: when training batches' rows are fetched (src/core/prefetch.py)
    batch_size: int = 1024
    num_workers: int = 1
    concurrency: int = 4
    epochs: int = 10
    fanouts: tuple[int, ...] = (15, 10, 5)
    hidden_channels: int = 256
    num_layers: int = 3
    lr: float = 0.003
    weight_decay: float = 0.0
    dropout: float = 0.5
    eval_every: int = 1
    max_steps_per_epoch: int = 0
    max_eval_seeds: int = 0
    log_dir: str = "logs"
    run_name: str | None = None
    checkpoint_dir: str = "data/checkpoints"
    resume: bool = False
    overwrite: bool = False  # replace an existing run of this name (src/train/run_names.py)
    tensorboard: str | None = None  # also write the logged scalars as TensorBoard events under <dir>/<run>/
    seed: int = 0
    collective_timeout_s: float = distributed.TIMEOUT.total_seconds()
    normalize_features: str = "none"  # src/core/normalize.py; "auto" is resolved by the backend at start
    model: str = "sage"  # src/train/model.py MODELS
    heads: int = 1  # attention heads (gat)
    target_type: str | None = None  # heterogeneous datasets: the labelled node type (src/train/hetero_model.py)
    featureless: str = "embedding"  # heterogeneous: input of featureless node types (embedding | constant | degree)
    add_reverse: bool = False  # heterogeneous: also pass messages along every relationship type backwards (rev_<rel>)
    trim: bool = True  # trim_to_layer; False computes every layer on every sampled node (for comparison)
    metric: str = "auto"  # src/train/metrics.py; "auto" is the dataset's default, resolved at start
    patience: int = 0  # stop after this many evaluations without a better validation metric; 0 = never
    task: str = "node"  # node | link (src/train/link.py, flags in src/train/link_flags.py)
    edge_split: str = "0.85,0.05,0.10"
    edge_split_seed: int = 0
    neg_ratio: float = 1.0
    neg_sampling: str = "uniform"
    decoder: str = "dot"
    eval_negatives: int = 100
    hits_k: int = 20
    flags: dict[str, Any] = field(default_factory=dict, repr=False)

    def batches_in_flight(self) -> int:
        """Training batches whose rows are alive at once, the step's included: the prefetch threads' and the
        step's, or (``--fetch_rows after_step``) the threads' only, the step's counted among them."""
        return max(1, self.num_loader_threads + (0 if self.fetch_rows == "after_step" else 1))

    def batches_without_rows(self) -> int:
        """Training batches sampled ahead that wait for a turn to fetch their rows (``--fetch_rows after_step``)."""
        return 1 if self.fetch_rows == "after_step" and self.num_loader_threads > 0 else 0
