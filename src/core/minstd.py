"""Minstd (Park-Miller) streams: the per-node random source of the in-database samplers.

Why a shared constant: the Neo4j Cypher path, the gnn.* procedures (Java) and Ladybug's Cypher
draw Floyd's subsets from the same generator, ``state' = state * 48271 mod (2^31 - 1)``, so
their samples can be replayed and compared in Python.
"""
MINSTD_MODULUS = 2_147_483_647
