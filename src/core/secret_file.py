""":func:`read_secret_file`: a password from a file, without hanging or exhausting memory.

Why not ``Path.read_text``: ``/dev/zero`` as the file reads forever into memory (MemoryError) and
a FIFO nobody writes to blocks forever. Regular files are read up to a size limit; pipes and FIFOs
(``--neo4j_password_file <(pass show neo4j)``) are read without blocking for a bounded time;
devices and folders are refused. Every failure is one :class:`UsageError` line.
"""
from __future__ import annotations

import os
import select
import stat
import time
from pathlib import Path

from src.core.errors import UsageError

MAX_BYTES = 4096  # far above any password; a bigger file is the wrong file
PIPE_WAIT_S = 5.0  # how long a FIFO or pipe may take to deliver the password


def read_secret_file(path: Path, what: str = "Neo4j password file") -> str:
    """The file's text, stripped; :class:`UsageError` naming ``path`` when it cannot be a password."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    if stat.S_ISREG(mode):
        data = _read_regular(path, what)
    elif stat.S_ISFIFO(mode):
        data = _read_pipe(path, what)
    else:
        kind = "a folder" if stat.S_ISDIR(mode) else "a device or socket"
        raise UsageError(f"{what} {path} is {kind}, not a file: pass a file holding the password")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text: pass a file holding the password") from None


def _read_regular(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_BYTES} bytes: pass a file holding only the password")
    return data


def _read_pipe(path: Path, what: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    chunks: list[bytes] = []
    deadline = time.monotonic() + PIPE_WAIT_S
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                if chunks:  # the writer keeps the pipe open after the password
                    return b"".join(chunks)
                raise UsageError(f"{what} {path} is a FIFO that sent no password (end of file) within "
                                 f"{PIPE_WAIT_S:.0f} s: write the password to it, or pass a regular file")
            try:
                chunk = os.read(fd, MAX_BYTES + 1)
            except BlockingIOError:
                continue
            if not chunk:
                if chunks:
                    return b"".join(chunks)
                time.sleep(0.05)  # no writer yet: keep waiting until the deadline
                continue
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_BYTES:
                raise UsageError(f"{what} {path} delivers more than {MAX_BYTES} bytes: pass only the password")
    finally:
        os.close(fd)
