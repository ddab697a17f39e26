"""Predicted links from a ``--task link`` run's checkpoint: top-k candidates per node, or scores of given pairs.

Why this shape:
- embeddings: every node the scores need is embedded once through the backend's own node loader
  (the run's fanouts, a fixed sampling seed, so a re-run or a resume embeds the same), over the
  graph as the backend holds it now: every relationship, held-out ones included, as PyG's link
  examples pass messages at test time. The written links are for use, not for evaluation.
- top-k: candidates are all dataset nodes but the node itself and (unless ``include_neighbours``)
  the nodes it already links to in either direction; a block of query nodes is scored against
  every candidate in pieces of at most :data:`SCORE_ELEMENTS` numbers (the MLP decoder's
  ``[rows, candidates, H]`` products included), so memory stays bounded by the embeddings.
  Ties are ranked by candidate id, so the result is a function of the scores only.
- writers (a :class:`LinkWriter`: Neo4j relationships, src/neo4jdb/link_write_back.py, or an
  ``.npz``) get fixed chunks, each written once: a writer that remembers finished chunks makes a
  killed write-back resume where it stopped.
- ``score`` is the decoder's probability ``sigmoid(logit)`` (float64), ``rank`` 1 = best.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from src.backends.base import Backend
from src.core.errors import UsageError, UserError
from src.train.checkpoint import CHECKPOINT_FILE, load_checkpoint, model_identity
from src.train.config import TrainConfig
from src.train.link import LinkTask
from src.train.predict import write_pending

SCORE_ELEMENTS = 1 << 24  # floats one scoring piece may hold (64 MiB): rows x candidates (x H for the MLP decoder)
PAIR_CHUNK = 5000  # pairs per written chunk (one transaction on Neo4j)


@dataclass
class Links:
    """One chunk of predicted links ``src[i] -> dst[i]`` with their probability and, for top-k, their rank."""

    src: np.ndarray
    dst: np.ndarray
    score: np.ndarray
    rank: np.ndarray | None = None


class LinkWriter(Protocol):
    def done(self) -> set[int]: ...  # chunk indices already written (resume skips them)

    def write(self, idx: int, links: Links) -> None: ...

    def finish(self) -> str: ...  # verify, mark complete; a line for the summary


def load_link_model(cfg: TrainConfig, backend: Backend) -> tuple[nn.Module, int]:
    """The link run's last checkpoint (encoder + decoder) in eval mode, and its epoch."""
    identity = model_identity(cfg, backend.num_features, backend.num_classes)
    path = Path(cfg.checkpoint_dir) / str(cfg.run_name) / CHECKPOINT_FILE
    state = load_checkpoint(path, identity)
    if state is None:
        raise UserError(f"run {cfg.run_name!r} has no checkpoint at {path}; train it first (or pass its --checkpoint_dir)")
    model = LinkTask.build_model(cfg, identity)
    model.load_state_dict(state["model"])
    return model.eval(), int(state["epoch"])


@torch.no_grad()
def embed_nodes(model: nn.Module, backend: Backend, ids: np.ndarray, *, seed: int, progress: bool = True) -> Tensor:
    """``[len(ids), H]`` encoder embeddings of the sorted ``ids``, batch by batch through the backend's loader."""
    out: Tensor | None = None
    with tqdm(total=len(ids), unit="node", unit_scale=True, desc="embed", disable=not progress) as bar:
        for batch in backend.make_loader(torch.from_numpy(ids.astype(np.int64)), shuffle=False, seed=seed):
            n = int(batch.batch_size)
            h = model.embed(batch)
            if out is None:
                out = torch.empty(len(ids), h.size(1))
            out[torch.from_numpy(np.searchsorted(ids, batch.n_id[:n].numpy()))] = h
            bar.update(n)
    return out if out is not None else torch.empty(0, 0)


def _piece_rows(decoder: nn.Module, channels: int, candidates: int) -> tuple[int, int]:
    """(query rows, candidates) of one scoring piece within :data:`SCORE_ELEMENTS`."""
    per_pair = channels if not hasattr(decoder, "mlp") else 2 * channels  # the MLP holds h_u*h_v and its hidden layer
    cols = max(1, min(candidates, SCORE_ELEMENTS // max(per_pair, 1)))
    return max(1, SCORE_ELEMENTS // (cols * per_pair)), cols


@torch.no_grad()
def score_block(decoder: nn.Module, h_src: Tensor, h_all: Tensor) -> Tensor:
    """``[len(h_src), len(h_all)]`` logits of every (query, candidate) pair, in bounded pieces."""
    rows, cols = _piece_rows(decoder, h_all.size(1), len(h_all))
    out = torch.empty(len(h_src), len(h_all))
    dot = not hasattr(decoder, "mlp")
    for r in range(0, len(h_src), rows):
        q = h_src[r:r + rows]
        for c in range(0, len(h_all), cols):
            cand = h_all[c:c + cols]
            if dot:
                out[r:r + rows, c:c + cols] = q @ cand.t()
            else:
                out[r:r + rows, c:c + cols] = decoder(q[:, None, :], cand[None, :, :])
    return out


def top_k(logits: Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the ``k`` best finite logits' columns and values, best first, ties by column; ``-1`` pads short rows."""
    k = min(k, logits.size(1))
    values, cols = torch.topk(logits, k, dim=1)
    values, cols = values.numpy(), cols.numpy()
    order = np.lexsort((cols, -values))  # last key first: value descending, then column ascending
    values, cols = np.take_along_axis(values, order, 1), np.take_along_axis(cols, order, 1)
    cols[~np.isfinite(values)] = -1
    return cols, values


def probability(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


Neighbours = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # ids -> (position in ids, linked node)


def _chunk_top_k(decoder: nn.Module, emb: Tensor, q: np.ndarray, at: np.ndarray, other: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of query nodes ``q`` against every row of ``emb``, ``q[at[i]] -> other[i]`` and self excluded;
    rows in blocks of at most :data:`SCORE_ELEMENTS` logits."""
    step = max(1, SCORE_ELEMENTS // max(len(emb), 1))
    parts = []
    for r in range(0, len(q), step):
        rows = q[r:r + step]
        logits = score_block(decoder, emb[torch.from_numpy(rows)], emb)
        logits[torch.arange(len(rows)), torch.from_numpy(rows)] = -torch.inf
        mine = (at >= r) & (at < r + len(rows))
        logits[torch.from_numpy(at[mine] - r), torch.from_numpy(other[mine])] = -torch.inf
        parts.append(top_k(logits, k))
    return np.concatenate([c for c, _ in parts]), np.concatenate([v for _, v in parts])


@torch.no_grad()
def predict_top_k(model: nn.Module, emb: Tensor, ids: np.ndarray, k: int, writer: LinkWriter, *, chunk: int,
                  neighbours: Neighbours | None, progress: bool = True) -> tuple[int, int]:
    """Top-``k`` links of each of the sorted ``ids`` against every node of ``emb`` (row = node id), in chunks
    of ``chunk`` query nodes; ``neighbours`` None: linked nodes stay candidates. Returns (nodes now, skipped)."""
    def write_chunk(c: int, lo: int, hi: int) -> None:
        q = ids[lo:hi]
        at, other = neighbours(q) if neighbours is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        cols, values = _chunk_top_k(model.decoder, emb, q, at, other, k)
        keep = cols >= 0
        rank = np.broadcast_to(np.arange(1, cols.shape[1] + 1), cols.shape)
        writer.write(c, Links(src=np.repeat(q, keep.sum(axis=1)), dst=cols[keep], score=probability(values[keep]),
                              rank=rank[keep]))

    return write_pending(len(ids), chunk, writer, write_chunk, unit="node", desc="top-k", progress=progress)


@torch.no_grad()
def predict_pairs(model: nn.Module, emb: Tensor, emb_ids: np.ndarray, pairs: np.ndarray, writer: LinkWriter, *,
                  progress: bool = True) -> tuple[int, int]:
    """Scores of ``pairs`` ``[P, 2]`` (in order) from ``emb`` (rows = sorted ``emb_ids``), in chunks of
    :data:`PAIR_CHUNK`. Returns (pairs scored now, skipped as already written)."""
    def write_chunk(c: int, lo: int, hi: int) -> None:
        u, v = pairs[lo:hi, 0], pairs[lo:hi, 1]
        hu = emb[torch.from_numpy(np.searchsorted(emb_ids, u))]
        hv = emb[torch.from_numpy(np.searchsorted(emb_ids, v))]
        writer.write(c, Links(src=u, dst=v, score=probability(model.decoder(hu, hv).numpy())))

    return write_pending(len(pairs), PAIR_CHUNK, writer, write_chunk, unit="pair", desc="score", progress=progress)


def check_pairs(pairs: np.ndarray, num_nodes: int, source: str) -> np.ndarray:
    """``pairs`` as int64 ``[P, 2]`` of dense ids in ``0..num_nodes-1``, else one line naming ``source``."""
    arr = np.asarray(pairs)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0:
        raise UsageError(f"{source}: expected a non-empty list of (source id, destination id) pairs, got shape "
                         f"{tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise UsageError(f"{source}: node ids must be integers (found {arr[~(arr == np.round(arr))][:1].tolist()})")
    elif arr.dtype.kind not in "iu":
        raise UsageError(f"{source}: node ids must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_nodes)
    if bad.any():
        raise UsageError(f"{source}: {int(bad.any(axis=1).sum())} pairs name ids outside 0..{num_nodes - 1} "
                         f"(e.g. {arr[bad.any(axis=1)][0].tolist()}); ids are the dataset's dense node ids")
    return arr


def read_pairs_file(path: str, num_nodes: int) -> np.ndarray:
    """A ``.npy`` ``[P, 2]`` integer array, or a ``.csv`` of two integer columns (an optional header line)."""
    p = Path(path)
    if p.suffix not in (".npy", ".csv"):
        raise UsageError(f"--pairs_file {path}: give a .npy [P, 2] array or a .csv of two id columns")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            text = p.read_text().splitlines()
            body = text[1:] if text and not text[0].replace(",", "").replace(" ", "").lstrip("-").isdigit() else text
            arr = np.loadtxt(body, delimiter=",", dtype=np.float64, ndmin=2) if body else np.zeros((0, 2))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--pairs_file {path} is unreadable ({str(exc).splitlines()[0][:160]})") from None
    return check_pairs(arr, num_nodes, f"--pairs_file {path}")


class LinkFileWriter:
    """Links into one ``.npz`` (``src``, ``dst``, ``score``, and ``rank`` for top-k), written atomically at the end."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.parts: list[Links] = []

    def done(self) -> set[int]:
        return set()

    def write(self, idx: int, links: Links) -> None:
        self.parts.append(links)

    def finish(self) -> str:
        out = {key: np.concatenate([getattr(p, key) for p in self.parts]) if self.parts else np.zeros(0)
               for key in ("src", "dst", "score")}
        if self.parts and self.parts[0].rank is not None:
            out["rank"] = np.concatenate([p.rank for p in self.parts])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, self.path)
        return f"wrote {len(out['src'])} links to {self.path}"
