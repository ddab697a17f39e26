"""``Backend``: what the one training loop asks of every backend, and the parts they all share.

A backend is where batches come from: the ids of each split, a sampler, and the feature and
graph stores (or the in-memory ``Data``) a PyG ``NodeLoader`` reads. Everything else (the
loader, prefetch threads, split bookkeeping, context management, the counters the log shows)
is written once here, so backends cannot drift in how batches are built.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, FeatureStore, GraphStore
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import NegativeSampling

from src.core.edge_split import EdgeSplit, EdgeSplitSpec
from src.core.errors import UserError
from src.core.normalize import FeatureNormalizer, resolve
from src.core.feature_stats import FeatureStats
from src.core.prefetch import PrefetchLoader
from src.core.sampling import HopSampler
from src.core.schema import SPLITS
from src.train.chunked_layer import EncodedRows


class Backend(ABC):
    """Splits, samplers and stores of one dataset; subclasses say where they live."""

    name: str = "backend"
    input_type: str | None = None  # heterogeneous backends: the node type of the seeds (NodeLoader's input_nodes)
    stats_fix = "reload the dataset"  # how a user gets missing feature statistics (one-line errors say it)

    def __init__(self, *, dataset: str, num_nodes: int, num_features: int, num_classes: int, fanouts: Sequence[int],
                 batch_size: int, num_loader_threads: int) -> None:
        self.dataset = dataset
        self.num_nodes = int(num_nodes)
        self.num_features = int(num_features)
        self.num_classes = int(num_classes)
        self.fanouts = [int(k) for k in fanouts]
        self.batch_size = batch_size
        self.num_loader_threads = num_loader_threads
        self._splits: dict[str, Tensor] = {}
        self._samplers: list[HopSampler] = []
        self._normalizer: FeatureNormalizer | None = None

    # -- what a backend provides -------------------------------------------------------------
    @property
    @abstractmethod
    def num_edges(self) -> int:
        """Edges (relationships) of the whole graph."""

    @abstractmethod
    def _split_ids(self, split: str) -> np.ndarray:
        """Ids of ``split``'s nodes in the order training shards them (read once; :meth:`split_nodes` keeps them)."""

    @abstractmethod
    def _make_sampler(self, seed: int) -> HopSampler:
        """A fresh sampler of this backend, reproducible under ``seed``."""

    @abstractmethod
    def _loader_data(self) -> Data | tuple[FeatureStore, GraphStore]:
        """What the ``NodeLoader`` gathers features from: in-memory ``Data`` or (feature, graph) stores."""

    def _batch_transform(self) -> Callable[[Data], Data] | None:
        """A step applied to each batch in its fetch thread (e.g. attaching sparse rows); none by default."""
        return None

    def feature_stats(self) -> FeatureStats | None:
        """The dataset's column statistics (src/core/normalize.py), None where none were stored."""
        return None

    def make_model(self, cfg: Any) -> torch.nn.Module | None:
        """A model of this backend's own when the zoo's cannot read its batches (heterogeneous ones); None: the zoo's."""
        return None

    def recorded_metric(self) -> str | None:
        """The metric the dataset's record names as its default (``--metric auto``); None: decided by class count."""
        return None

    # -- shared ------------------------------------------------------------------------------
    def normalize_features(self, requested: str) -> str:
        """Apply ``--normalize_features requested`` to every batch's ``x`` from now on; returns the mode
        (``auto`` resolved). A mode that needs statistics the dataset lacks is a one-line UserError."""
        stats = self.feature_stats() if requested in ("auto", "row_l1", "standard") else None
        self._normalizer = resolve(requested, stats, self.dataset, self.stats_fix)
        return self._normalizer.mode

    def _loader_transform(self) -> Callable[[Data], Data] | None:
        own, normalizer = self._batch_transform(), self._normalizer
        if normalizer is None or normalizer.mode == "none":
            return own

        def transform(batch: Data) -> Data:
            batch = own(batch) if own is not None else batch
            batch.x = normalizer(batch.x)
            return batch

        return transform

    rows_to_layer = False  # --decode_rows layer: deferred rows reach the model still encoded

    def _deferred_decode(self) -> Callable[[Tensor], Tensor] | None:
        """Decodes a batch's ``x`` kept as stored bytes until the step takes it (``--decode_rows step|layer``); None:
        batches arrive decoded (every backend but a database one asked for it)."""
        return None

    def _prefetch(self, loader: NodeLoader | LinkLoader, transform: Callable[[Data], Data] | None) -> PrefetchLoader:
        """``loader``'s batches in ``num_loader_threads`` threads; ``transform`` runs in those threads, or, when
        rows stay encoded until the step, after their decoding in the consumer's (it may read ``x``). With
        :attr:`rows_to_layer` (and no batch transform of the backend's own) the step gets ``x`` as
        :class:`EncodedRows`, decoded (and normalised) chunk by chunk in the model's first layer."""
        decode = self._deferred_decode()
        if decode is None:
            loader.transform = transform
            return PrefetchLoader(loader, self.num_loader_threads)
        loader.transform = None
        if self.rows_to_layer and self._batch_transform() is None:
            normalizer = self._normalizer if self._normalizer is not None and self._normalizer.mode != "none" else None

            def rows(codes: Tensor) -> Tensor:
                x = decode(codes)
                return x if normalizer is None else normalizer(x)

            def hand_over(batch: Data) -> Data:
                batch.x = EncodedRows(batch.x, rows, self.num_features)
                return batch

            return PrefetchLoader(loader, self.num_loader_threads, finish=hand_over)

        def finish(batch: Data) -> Data:
            batch.x = decode(batch.x)
            return batch if transform is None else transform(batch)

        return PrefetchLoader(loader, self.num_loader_threads, finish=finish)

    def split_nodes(self, split: str) -> Tensor:
        """Ids of the nodes of ``split`` (train/val/test) as a LongTensor, read once."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if split not in self._splits:
            self._splits[split] = torch.from_numpy(np.asarray(self._split_ids(split), dtype=np.int64))
        return self._splits[split]

    def splits_changed(self) -> bool:
        """Whether the splits may differ from those :meth:`split_nodes` read (edited in the database since);
        asked on rank 0 before each epoch. False: this backend's splits never change under a run."""
        return False

    def reread_splits(self) -> dict[str, Tensor]:
        """Every split read again (after :meth:`splits_changed`)."""
        self._splits.clear()
        return {split: self.split_nodes(split) for split in SPLITS}

    def use_splits(self, splits: dict[str, Tensor]) -> None:
        """Take ``splits`` (rank 0's :meth:`reread_splits`, so every rank shards the same seeds)."""
        self._splits = dict(splits)

    def make_loader(self, seeds: Tensor, *, shuffle: bool, seed: int) -> PrefetchLoader:
        """Batches of ``seeds`` with sampled neighbourhoods; ``seed`` fixes order and samples; later
        batches are sampled and fetched in ``num_loader_threads`` threads."""
        sampler = self._make_sampler(seed)
        self._samplers.append(sampler)
        loader = NodeLoader(
            self._loader_data(), node_sampler=sampler, batch_size=self.batch_size,
            input_nodes=seeds if self.input_type is None else (self.input_type, seeds),
            shuffle=shuffle, generator=torch.Generator().manual_seed(seed),
        )
        return self._prefetch(loader, self._loader_transform())

    # -- link prediction (src/train/link.py) ------------------------------------------------
    def use_edge_split(self, spec: EdgeSplitSpec) -> EdgeSplit:
        """From now on every sampler of this backend samples the training graph of ``spec``'s edge split
        (its validation and test pairs removed); returns the split. Backends without it say so in one line."""
        raise UserError(f"--task link is not supported by the {self.name} backend: use a homogeneous dataset on the neo4j, "
                        "ladybug or in-memory backend")

    def training_degrees(self) -> Tensor:
        """How often each node is a neighbour in the training graph (weights of degree-biased negatives)."""
        raise UserError(f"degree-biased negatives are not supported by the {self.name} backend")

    def linked_nodes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every node ``ids[i]`` shares an edge with in either direction, as (positions ``i``, nodes): the
        candidates predicted links leave out (src/train/link_predict.py). Backends without it say so."""
        raise UserError(f"predicted links are not supported by the {self.name} backend: use the neo4j backend or "
                        "in-memory-alternative.py --full_graph")

    def make_link_loader(self, pairs: Tensor, *, seed: int, neg_sampling: NegativeSampling | None,
                         exclude_targets: bool = False) -> PrefetchLoader:
        """Batches of ``batch_size`` positive ``pairs`` ``[P, 2]`` (in order) with ``neg_sampling``'s negatives, as
        PyG's ``LinkLoader`` builds them (``edge_label_index``, ``edge_label``) over this backend's sampler;
        ``exclude_targets``: without the edges of the batch's positive pairs (src/core/link_sampling.py)."""
        sampler = self._make_sampler(seed)
        sampler.exclude_targets = exclude_targets
        self._samplers.append(sampler)
        data, edge_label_index = self._loader_data(), pairs.t().contiguous()
        loader = LinkLoader(  # remote stores name the edge type: None (homogeneous)
            data, link_sampler=sampler, edge_label_index=edge_label_index if isinstance(data, Data) else (None, edge_label_index),
            neg_sampling=neg_sampling, batch_size=self.batch_size, shuffle=False,
            generator=torch.Generator().manual_seed(seed),
        )
        return self._prefetch(loader, self._loader_transform())

    def sampling_queries(self) -> int:
        """Queries the samplers of this backend sent so far (0 for samplers that send none)."""
        return sum(getattr(s, "queries", 0) for s in self._samplers)

    def stats(self) -> dict[str, Any]:
        """Counters for the epoch log; subclasses add their own."""
        return {"num_nodes": self.num_nodes, "num_edges": self.num_edges}

    def server_pid(self) -> int | None:
        """Pid of a local graph server whose memory the log should show beside the trainer's; none here."""
        return None

    def close(self) -> None:
        """Release clients and services; nothing to release by default."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
