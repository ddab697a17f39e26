"""Free local TCP ports for servers and rank rendezvous (tests, benchmarks, the local Neo4j)."""
from __future__ import annotations

import socket


def free_port() -> int:
    """A port that is free right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair() -> int:
    """A free port whose successor is free too: the partitioned backend's RPC uses master_port + 1."""
    while True:
        port = free_port()
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
