"""``LadybugHeteroBackend``: a heterogeneous dataset trained from an embedded Ladybug file (samples and rows per batch)."""
from __future__ import annotations

import numpy as np

from src.backends.hetero import HeteroBackend
from src.ladybugdb.client import LadybugClient
from src.ladybugdb.hetero_loader import LadybugHeteroSpec
from src.ladybugdb.hetero_sampler import LadybugHeteroRows, LadybugHeteroSampler, stored_types


class LadybugHeteroBackend(HeteroBackend):
    name = "ladybug"

    def __init__(self, client: LadybugClient, spec: LadybugHeteroSpec, *, target_type: str, fanouts: str,
                 batch_size: int, num_loader_threads: int, featureless: str = "embedding",
                 add_reverse: bool = False) -> None:
        """``add_reverse``: also sample every stored relationship type backwards (``rev_<rel>``)."""
        counts = {(r["src"], r["rel"], r["dst"]): r["num_edges"] for r in spec.rels}
        super().__init__(dataset=spec.dataset, node_types={n["name"]: (n["num_nodes"], n["num_features"], n["labelled"])
                                                           for n in spec.nodes},
                         edge_types={e: counts[stored] for e, (stored, _) in stored_types(spec, add_reverse).items()},
                         target_type=target_type, num_classes=spec.num_classes, fanouts=fanouts,
                         batch_size=batch_size, num_loader_threads=num_loader_threads, featureless=featureless)
        self.client = client
        self.spec = spec
        self.add_reverse = add_reverse
        self.rows = LadybugHeteroRows(client, spec, degrees=featureless == "degree", add_reverse=add_reverse)

    def _split_ids(self, split: str) -> np.ndarray:
        rows = self.client.execute(f"MATCH (n:`{self.spec.label(self.input_type)}`) WHERE n.split = $split "
                                   "RETURN n.id ORDER BY n.id", split=split)
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def _make_sampler(self, seed: int) -> LadybugHeteroSampler:
        return LadybugHeteroSampler(self.client, self.spec, self.type_fanouts, seed=seed, add_reverse=self.add_reverse)

    def _loader_data(self):  # noqa: ANN202
        return self.rows, self.edge_metadata

    def close(self) -> None:
        self.client.close()
