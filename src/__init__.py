"""Distributed GNN training on a graph database (Neo4j) with PyG.

Library code for the entry scripts at the repository root. Modules have one job each:
``client`` (driver + transactions), ``neo4j_local`` (the project's own Neo4j server),
``datasets`` (one record type for every source), ``graph_store``/``feature_store``/
``graph_sampler`` (the Neo4j PyG backend), ``csr_sampler`` (in-memory reference sampler),
``trainer`` (one loop for every backend).
"""
import warnings

# PyG 2.8 calls torch.jit.script at import time, which torch 2.15 deprecates with a FutureWarning
# on every run; it is not ours to fix and would sit above every one-line error message.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
