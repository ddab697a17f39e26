"""User-facing errors: one actionable line, a fixed exit code, never a traceback.

Library code raises :class:`UserError` (a problem with the environment or the data, exit 1),
:class:`UsageError` (bad flags, exit 2) or :class:`Neo4jUnavailable` (the server stopped
answering, exit 1). Entry scripts wrap their ``main`` in :func:`run_cli`, which prints
``error: <message>`` and exits.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Callable, NoReturn

log = logging.getLogger(__name__)


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 1


class UsageError(UserError):
    """Bad command-line input (exit code 2, like argparse)."""

    exit_code = 2


class Neo4jUnavailable(UserError):
    """The Neo4j server cannot be reached, rejects our credentials or lacks the database."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``str(exc)`` (stripped; at most ``limit`` characters), or the exception's
    type name when it has no text: the gist of a long driver/C++ message inside a one-line error."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if limit is None else line[:limit]


def one_line(exc: BaseException) -> str:
    """``"<type>: <whole message>"`` with all whitespace runs (newlines too) collapsed to one space;
    just the type name when the message is empty (for errors whose type says what went wrong)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    _close_progress_bars()
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _close_progress_bars() -> None:
    """A progress bar interrupted by the error would otherwise share its line with the message."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # best effort: the error line matters more than the bar
            pass


def check_writable_dir(directory: str | Path, flag: str) -> None:
    """Prove a file can be written in ``directory`` without creating it (a failed run leaves no folders).

    The nearest existing ancestor must be a writable folder; the caller creates the rest later.
    """
    path = Path(directory).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UsageError(
            f"{flag} {str(directory)!r} is not writable ({exc.strerror or exc}): pick a directory you can write to"
        ) from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error format: one ``error:`` line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message}; see `{self.prog} --help`", UsageError.exit_code)


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run an entry point; turn :class:`UserError` into a one-line message and exit code."""
    try:
        code = main()
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    raise SystemExit(code or 0)
