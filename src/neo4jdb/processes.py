"""The local server's processes: finding the JVM that serves a home, locking its lifecycle, and
children that die with the process that started them.

Why it exists: two ``jobs/neo4j.sh start`` (or two offline imports) at once used to race on
``server.json`` and leave an untracked JVM serving the port while ``status`` said "not running".
Every change of a server's state (start, stop, reset, the offline import, a password reset) now
holds :func:`server_lock`, and the server is found by its process (its ``--home-dir``), not only
by the state file.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MAIN_CLASS = "org.neo4j.server.CommunityEntryPoint"
_PR_SET_PDEATHSIG = 1

_held: dict[Path, int] = {}  # lock file -> depth, for this process (re-entrant across its threads)
_held_guard = threading.Lock()


def pid_alive(pid: int) -> bool:
    """True for a running process (a zombie, exited but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def serving_jvms(home: Path) -> list[int]:
    """Pids of the Neo4j server JVMs running with ``--home-dir=<home>`` (normally zero or one)."""
    marker = f"--home-dir={home} "
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = cmdline(int(entry.name)) + " "
            if MAIN_CLASS in cmd and marker in cmd and pid_alive(int(entry.name)):
                pids.append(int(entry.name))
    return sorted(pids)


def listening_ports(pid: int) -> set[int]:
    """TCP ports ``pid`` listens on (from /proc/net/tcp{,6} and the process's socket inodes)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def terminate(pid: int, timeout: float = 60.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True when it exited on the SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.1)
    return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def server_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on ``root``'s server lifecycle (``root/lifecycle.lock``), waited for.

    Re-entrant within a process (the offline import stops and starts the server while holding it,
    from a second thread too); released by the kernel when the process dies, so it is never stale.
    """
    path = Path(root) / "lifecycle.lock"
    with _held_guard:
        if path in _held:
            _held[path] += 1
            fd = None
        else:
            fd = -1
    if fd is None:
        try:
            yield
        finally:
            with _held_guard:
                _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _held_guard:
            _held[path] = 1
        try:
            yield
        finally:
            with _held_guard:
                del _held[path]
    finally:
        os.close(fd)  # releases the lock


def die_with_parent() -> None:
    """``preexec_fn`` for a child that must not outlive this process (Linux: SIGKILL on its death),
    e.g. Maven or the bulk importer when the loader is killed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
