"""What keeps the local server's secrets private: the initial password, file modes, the env line.

Why a module of its own: each is a way a password or its hash could leak to another local user
(a command line in the process list, a world-readable ``auth.ini`` or log, a path that runs a
command under ``eval "$(bash jobs/neo4j.sh env)"``), and they are checked together
(tests/test_server_security.py).
"""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from src.core.errors import UserError
from src.core.paths import REPO_DIR

SET_PASSWORD_TOOL = REPO_DIR / "jobs" / "neo4j" / "tools" / "SetInitialPassword.java"


def set_initial_password(home: Path, lib: Path, password: str) -> None:
    """``neo4j-admin dbms set-initial-password`` on a fresh store, the password on stdin.

    The tool takes the password only as an argument, visible to every local user in the process
    list; jobs/neo4j/tools/SetInitialPassword.java runs the same tool inside its own JVM with the
    password read from standard input, so no command line ever holds it.
    """
    env = {**os.environ, "NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf")}
    classpath = f"{lib}/*:{home / 'plugins'}/*"  # the plugin declares its settings in neo4j.conf
    proc = subprocess.run(["java", "-cp", classpath, str(SET_PASSWORD_TOOL)], input=password + "\n",
                          capture_output=True, text=True, env=env, umask=0o077)
    if proc.returncode != 0:
        raise UserError(f"neo4j-admin set-initial-password failed: {proc.stderr.strip()[-300:]}")


def owner_only(root: Path) -> None:
    """Owner-only permissions on the server's folder (password, auth.ini hash, store, logs).

    The top folders at 0700 already shut other users out of everything below; files Neo4j has
    written are tightened too, so a copy of the tree keeps them private (the server runs with
    umask 077 for new files).
    """
    for top in (root, root / "home"):
        if top.is_dir():
            top.chmod(0o700)
    for sub in ("home/data", "home/logs", "home/conf"):
        for dirpath, dirnames, filenames in os.walk(root / sub):
            os.chmod(dirpath, 0o700)
            for name in filenames:
                path = os.path.join(dirpath, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode & 0o700)


def env_line(uri: str, password_file: Path) -> str:
    """``export ...`` for ``eval "$(bash jobs/neo4j.sh env)"``, each value quoted with :func:`shlex.quote`."""
    values = {"NEO4J_URI": shlex.quote(uri), "NEO4J_USER": "neo4j", "NEO4J_DATABASE": "neo4j",
              "NEO4J_PASSWORD": f'"$(cat {shlex.quote(str(password_file))})"'}
    return "export " + " ".join(f"{k}={v}" for k, v in values.items())


