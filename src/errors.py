"""User-facing errors: one actionable line, a fixed exit code, never a traceback.

Library code raises :class:`UserError` (bad input, exit 2 via :class:`UsageError`) or
:class:`GraphDBError`-style subclasses (environment problems, exit 1).  Entry scripts wrap
their ``main`` in :func:`run_cli`, which prints ``error: <message>`` and exits.
"""
from __future__ import annotations

import logging
import sys
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


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run an entry point; turn :class:`UserError` into a one-line message and exit code."""
    try:
        code = main()
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    raise SystemExit(code or 0)
