"""Minstd (Park-Miller) streams: the per-node random source of the in-database samplers.

Why a shared constant: the Neo4j Cypher path, the gnn.* procedures (Java) and Ladybug's Cypher
draw Floyd's subsets from the same generator, ``state' = state * 48271 mod (2^31 - 1)``, so
their samples can be replayed and compared in Python.
"""
import numpy as np

MINSTD_MODULUS = 2_147_483_647
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hop_states(base: int, n: int) -> np.ndarray:
    """Minstd states of frontier positions ``0..n-1`` of a hop with client state ``base``.

    SplitMix64 of ``base + (i + 1) * golden`` reduced to 1..2^31-2: the exact mirror of
    ``GnnProcedures.hopState`` (so tests can replay a ``gnn.sampleHops`` call).
    """
    z = np.uint64(base) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (np.uint64(1) + z % np.uint64(MINSTD_MODULUS - 1)).astype(np.int64)

