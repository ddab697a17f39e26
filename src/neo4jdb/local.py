"""The project's own Neo4j Community 5.26 server: fetched from Maven Central, run on 127.0.0.1.

Layout under ``data/neo4j`` (override with ``GNN_NEO4J_DIR``)::

    lib-<version>/   Neo4j's jars, resolved by Maven from jobs/neo4j/pom.xml (``.complete`` marks a
                     full copy); our plugin and importer jars are built beside it (src/neo4jdb/builds.py)
    home/            NEO4J_HOME: conf/neo4j.conf (rewritten at each start), data/, logs/
    password         generated password, mode 0600 (src/neo4jdb/password.py: never regenerated for a store)
    server.json      pid, port, version of the running server (absent when stopped; a serving JVM of
                     this home that it does not name is found by its command line and recorded)
    lifecycle.lock   held by every start, stop, reset, offline import (src/neo4jdb/processes.py)

Used through ``jobs/neo4j.sh start|stop|status|env|reset|set-password`` (``python -m src.neo4jdb.local``).
When ``NEO4J_URI`` is set the user runs their own server and nothing here starts one.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from src.client import READ_TIMEOUT_S
from src.core.errors import ArgumentParser, UsageError, UserError, run_cli
from src.core.paths import DATA_DIR
from src.core.ports import free_port
from src.neo4jdb.builds import PLUGIN_JAR, JarCache, neo4j_version
from src.neo4jdb.class_archive import ClassArchive
from src.neo4jdb.password import has_store_password, new_password, read_password, set_password
from src.neo4jdb.processes import (MAIN_CLASS, cmdline, listening_ports, pid_alive, port_free, server_lock,
                                   serving_jvms, terminate)
from src.neo4jdb.server_secrets import env_line, owner_only, set_initial_password

READY_POLL_S = 0.1  # between readiness probes: a failed probe is a refused connection, cheap
_SIZE = re.compile(r"^\d+[kKmMgG]$")
log = logging.getLogger(__name__)


@dataclass
class LocalNeo4j:
    """Paths and lifecycle of the project's local Neo4j server."""

    root: Path = Path(os.environ.get("GNN_NEO4J_DIR", DATA_DIR / "neo4j"))
    lib: Path | None = None  # jar cache; several servers (e.g. in tests) may share one

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.version = neo4j_version()
        self.lib = Path(self.lib) if self.lib else self.root / f"lib-{self.version}"
        self.home = self.root / "home"
        self.password_file = self.root / "password"
        self.state_file = self.root / "server.json"

    @property
    def jars(self) -> JarCache:
        """Neo4j's jars and our built jars for this server (src/neo4jdb/builds.py)."""
        return JarCache(self.lib, self.version)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict | None:
        """The running server's state, or None. A JVM serving this home that ``server.json`` does
        not name (written by a start that raced another, or deleted) is found by its process and
        recorded; stale state files are removed."""
        st = _read_json(self.state_file)
        if st.get("pid") and pid_alive(st["pid"]) and f"--home-dir={self.home}" in cmdline(st["pid"]):
            return st
        self.state_file.unlink(missing_ok=True)
        jvms = serving_jvms(self.home)
        if not jvms:
            return None
        pid = jvms[0]
        conf_port = _conf_port(self.home / "conf" / "neo4j.conf")
        ports = listening_ports(pid)
        port = conf_port if conf_port in ports else (min(ports) if ports else conf_port)
        if port is None:
            return None
        heap = next((a[4:] for a in cmdline(pid).split() if a.startswith("-Xmx")), "?")
        st = {"pid": pid, "port": port, "version": self.version, "heap": heap, "pagecache": "?",
              "started_at": None, "home": str(self.home), "adopted": True}
        log.warning("Neo4j pid %d serves %s on port %s without a state file; recorded it", pid, self.home, port)
        self.state_file.write_text(json.dumps(st))
        return st

    def connection_info(self) -> dict | None:
        st = self.state()
        if st is None:
            return None
        return {"uri": f"bolt://127.0.0.1:{st['port']}", "user": "neo4j", "password": self.password(), "database": "neo4j"}

    def password(self) -> str:
        """The password of this server (owner-only file); never regenerated for a store that has one."""
        return read_password(self.password_file, self.home)

    # -- install -------------------------------------------------------------------------
    def install(self) -> None:
        """Resolve the Neo4j jars from Maven Central once (idempotent, fast when cached)."""
        self.jars.resolve()

    def install_plugin(self) -> Path | None:
        """Build the gnn.* procedures jar when missing or older than its sources; copy it into plugins/.

        The procedures only speed things up (src/neo4jdb/procedures.py falls back to Cypher), so without
        a JDK the server starts without them; a failing build of present sources is an error.
        """
        installed = self.home / "plugins" / PLUGIN_JAR
        jar = self.jars.plugin()
        if jar is None:
            print("warning: gnn.* procedures not built (needs Maven and a JDK: `apt-get install -y maven "
                  "openjdk-17-jdk-headless`); sampling and feature fetch will use Cypher", file=sys.stderr)
            installed.unlink(missing_ok=True)  # never serve a jar older than the sources
            return None
        src, dst = jar.stat(), installed.stat() if installed.exists() else None
        if dst is None or (dst.st_size, dst.st_mtime_ns) != (src.st_size, src.st_mtime_ns):
            # A new file renamed over the old one: a server still running keeps reading its own copy.
            installed.parent.mkdir(parents=True, exist_ok=True)
            tmp_copy = installed.with_name(f".{PLUGIN_JAR}.partial-{os.getpid()}")
            shutil.copy2(jar, tmp_copy)
            os.replace(tmp_copy, installed)
        return installed

    def importer_jar(self) -> Path | None:
        """The binary bulk importer (jobs/neo4j/importer), built once per change; None without Maven/JDK."""
        return self.jars.importer()

    def class_archive(self, name: str, classpath: list[str]) -> ClassArchive:
        """The class archive of our JVMs named ``name`` whose class path starts with ``classpath``,
        shared by every server using this jar cache (src/neo4jdb/class_archive.py)."""
        return ClassArchive.for_classpath(self.lib.parent / "class-archives", name, classpath)

    def _write_conf(self, port: int, heap: str, pagecache: str, auth: bool = True,
                    projection_cap_mb: int | None = None) -> None:
        conf = self.home / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        (conf / "neo4j.conf").write_text(
            "\n".join([
                "# written by src/neo4jdb/local.py at each start; edit the flags, not this file",
                "server.default_listen_address=127.0.0.1",
                "server.default_advertised_address=127.0.0.1",
                f"server.bolt.listen_address=127.0.0.1:{port}",
                "server.http.enabled=false",
                "server.https.enabled=false",
                f"dbms.security.auth_enabled={str(auth).lower()}",  # false only for `set-password`
                "dbms.usage_report.enabled=false",
                # the driver's read timeout (src/client.py READ_TIMEOUT_S): a stopped server is noticed
                # within it, a busy one sends NOOP chunks meanwhile
                f"server.bolt.connection_keep_alive={READ_TIMEOUT_S // 2}s",
                "server.bolt.connection_keep_alive_probes=2",
                "server.bolt.connection_keep_alive_for_requests=ALL",
                "server.bolt.connection_keep_alive_streaming_scheduling_interval=1s",
                f"server.memory.heap.initial_size={heap}",
                f"server.memory.heap.max_size={heap}",
                f"server.memory.pagecache.size={pagecache}",
                f"server.directories.data={self.home / 'data'}",
                f"server.directories.logs={self.home / 'logs'}",
                f"server.directories.import={self.home / 'import'}",
                f"server.directories.plugins={self.home / 'plugins'}",
                "db.tx_log.rotation.retention_policy=1 files",
                # largest projectionMb a gnn.* call may ask for (the plugin's default: half the heap)
                *([f"server.gnn.projection_max_mb={projection_cap_mb}"] if projection_cap_mb is not None else []),
                "",
            ])
        )

    def _set_initial_password(self) -> None:
        if not (self.home / "data" / "dbms" / "auth.ini").exists():
            set_initial_password(self.home, self.lib, self.password())
            owner_only(self.root)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, heap: str = "2g", pagecache: str = "2g", port: int | None = None, timeout: float = 120.0,
              projection_cap_mb: int | None = None) -> dict:
        """Start the server (or report the running one) and wait until Bolt answers.

        Serialised with every other start, stop or import of this home (:func:`server_lock`), so
        two at once give one server, the second reporting it as already running.
        """
        for name, value in (("heap", heap), ("pagecache", pagecache)):
            if not _SIZE.match(value):
                raise UsageError(f"invalid --{name} {value!r}: use a size like 512m or 4g")
        self.root.mkdir(parents=True, exist_ok=True)
        with server_lock(self.root):
            return self._start(heap, pagecache, port, timeout, projection_cap_mb=projection_cap_mb)

    def _start(self, heap: str, pagecache: str, port: int | None, timeout: float, auth: bool = True,
               projection_cap_mb: int | None = None) -> dict:
        st = self.state()
        # Left by a process killed mid-start or mid-stop, it may still be coming up or shutting down.
        if st is not None and self._wait_ready(st["pid"], int(st["port"]), timeout, auth):
            return {**st, "already_running": True}
        self.install()
        plugin = self.install_plugin()
        prev = _read_json(self.root / "last_port.json").get("port")
        port = port or (prev if prev and port_free(prev) else free_port())
        if not port_free(port):
            raise UsageError(f"port {port} on 127.0.0.1 is in use; pick another with --port or omit it")
        if projection_cap_mb is not None and (projection_cap_mb < 0 or plugin is None):
            raise UsageError(f"--projection_cap_mb {projection_cap_mb}: needs the gnn.* plugin and a value >= 0")
        self._write_conf(port, heap, pagecache, auth, projection_cap_mb)
        if not has_store_password(self.home):
            new_password(self.password_file)  # kept if present: a reset keeps the password
        self._set_initial_password()
        console = open(self.home / "logs" / "console.log", "ab")
        # The gnn plugin first, as the stock launcher puts the plugins first: its database extension
        # (which keeps its projections fresh) is found on the classpath, procedures in the plugins
        # folder. Its build jar rather than this home's copy, so that every server of this jar cache
        # has the same class path up to the plugins folder and maps the same class archive.
        classpath = [str(self.jars.plugin_jar())] if plugin else []
        classpath += [f"{self.lib}/*", f"{self.home / 'plugins'}/*"]
        archive = self.class_archive("server", classpath[:-1])  # this home's plugins: not a key (see above)
        cmd = [
            "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", *archive.flags(),
            "-Dfile.encoding=UTF-8", "-cp", ":".join(classpath), MAIN_CLASS,
            f"--home-dir={self.home}", f"--config-dir={self.home / 'conf'}",
        ]
        owner_only(self.root)
        proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.home, umask=0o077)
        st = {"pid": proc.pid, "port": port, "version": self.version, "heap": heap, "pagecache": pagecache,
              "started_at": time.time(), "home": str(self.home),
              "class_archive": [str(archive.path), str(archive.partial)]}  # committed by stop()
        self.state_file.write_text(json.dumps(st))
        (self.root / "last_port.json").write_text(json.dumps({"port": port}))
        try:
            self._wait_ready(proc, port, timeout, auth)
            if port not in listening_ports(proc.pid):  # a JVM this state does not name answered
                raise UserError(f"another process answers on port {port}, not the Neo4j started (pid {proc.pid}); "
                                f"stop it or start with another --port")
        except BaseException:
            archive.commit(terminate(proc.pid))
            self.state_file.unlink(missing_ok=True)
            raise
        return {**st, "already_running": False}

    def _wait_ready(self, proc: subprocess.Popen | int, port: int, timeout: float, auth: bool = True) -> bool:
        """Wait until Bolt answers; False if the server ``proc`` (a pid: not our child) exits meanwhile."""
        from neo4j import GraphDatabase
        from neo4j.exceptions import ServiceUnavailable

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if isinstance(proc, int):
                if not pid_alive(proc):
                    self.state_file.unlink(missing_ok=True)
                    return False
            elif proc.poll() is not None:
                raise UserError(f"Neo4j exited with code {proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                with GraphDatabase.driver(f"bolt://127.0.0.1:{port}", auth=("neo4j", self.password() if auth else ""),
                                          connection_timeout=2.0) as drv:
                    drv.verify_connectivity()
                    with drv.session(database="neo4j") as session:  # auto-commit: no retry noise
                        session.run("RETURN 1").consume()
                return True
            except (ServiceUnavailable, OSError):
                time.sleep(READY_POLL_S)
            except Exception as exc:  # e.g. database still starting
                if "DatabaseUnavailable" not in str(exc) and "not currently available" not in str(exc):
                    raise UserError(f"Neo4j started but the readiness query failed: {exc}") from None
                time.sleep(READY_POLL_S)
        raise UserError(f"Neo4j did not become ready within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the server of this home (only its JVMs: the recorded one and any untracked one).
        Returns False if none ran."""
        with server_lock(self.root):
            st = self.state()
            if st is None:
                return False
            clean = terminate(st["pid"], timeout)
            if "class_archive" in st:
                ClassArchive(*map(Path, st["class_archive"])).commit(clean)
            for stray in serving_jvms(self.home):
                terminate(stray, timeout)
            self.state_file.unlink(missing_ok=True)
            return True

    def reset(self) -> None:
        """Stop the server and delete its databases (the jar cache and password stay)."""
        with server_lock(self.root):
            self.stop()
            shutil.rmtree(self.home / "data", ignore_errors=True)

    def log_tail(self, lines: int = 25) -> str:
        out = []
        for name in ("neo4j.log", "console.log", "debug.log"):
            p = self.home / "logs" / name
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {p} ---\n" + "\n".join(tail))
        return "\n".join(out) or "(no Neo4j log written)"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _conf_port(conf: Path) -> int | None:
    """The Bolt port a conf file written by :meth:`LocalNeo4j._write_conf` names."""
    try:
        m = re.search(r"^server\.bolt\.listen_address=127\.0\.0\.1:(\d+)$", conf.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def local_server_pid(uri: str) -> int | None:
    """Pid of the project's local server if ``uri`` points at it (to log its RSS)."""
    st = LocalNeo4j().state()
    if st and uri.rstrip("/").endswith(f":{st['port']}") and ("127.0.0.1" in uri or "localhost" in uri):
        return int(st["pid"])
    return None


# -- command line ------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="jobs/neo4j.sh",
        description="Run the project's local Neo4j Community server (fetched from Maven Central, bound to 127.0.0.1, auth on).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{start,stop,status,env,reset,set-password,plugin-jar}")
    s = sub.add_parser("start", help="fetch Neo4j if needed, start it and wait until it answers")
    s.add_argument("--heap", default=os.environ.get("NEO4J_HEAP", "2g"), help="JVM heap (env NEO4J_HEAP; default 2g)")
    s.add_argument("--pagecache", default=os.environ.get("NEO4J_PAGECACHE", "2g"), help="page cache for the store files (env NEO4J_PAGECACHE; default 2g)")
    s.add_argument("--port", type=int, default=None, help="Bolt port on 127.0.0.1 (default: last used if free, else any free port)")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness (default 120)")
    s.add_argument("--projection_cap_mb", type=int, default=None,
                   help="largest in-heap projection (MiB) a gnn.* call may ask for; larger requests are refused "
                        "(server.gnn.projection_max_mb in neo4j.conf; default: half the heap)")
    sub.add_parser("stop", help="stop the server this project started and wait for it to exit")
    sub.add_parser("status", help="print URI, version, pid and data dir (exit 3 when not running)")
    sub.add_parser("env", help="print export lines for eval: NEO4J_URI, NEO4J_USER, NEO4J_PASSWORD, NEO4J_DATABASE")
    sub.add_parser("reset", help="stop the server and delete its databases")
    sub.add_parser("set-password", help="give the server a new generated password (in data/neo4j/password), keeping "
                                        "its databases: for a lost or deleted password file (restarts it once)")
    sub.add_parser("plugin-jar", help="build the gnn.* procedures jar if needed (Maven + JDK 17) and print its path, "
                   "for the plugins/ folder of your own Neo4j 5.26 server")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.environ.get("NEO4J_URI") and args.command in ("start", "stop", "reset", "set-password"):
        print(f"NEO4J_URI is set ({os.environ['NEO4J_URI']}): using that server; the local one is not {args.command}ed")
        return 0
    srv = LocalNeo4j()
    if args.command == "start":
        st = srv.start(heap=args.heap, pagecache=args.pagecache, port=args.port, timeout=args.timeout,
                       projection_cap_mb=args.projection_cap_mb)
        verb = "already running" if st["already_running"] else "started"
        print(f"Neo4j {st['version']} {verb}: bolt://127.0.0.1:{st['port']} (pid {st['pid']}, data {srv.home / 'data'})")
    elif args.command == "stop":
        print("Neo4j stopped" if srv.stop() else "Neo4j was not running")
    elif args.command == "reset":
        srv.reset()
        print(f"Neo4j stopped and its databases under {srv.home / 'data'} deleted")
    elif args.command == "set-password":
        running = set_password(srv)
        print(f"new password written to {srv.password_file}; databases kept; Neo4j "
              + ("running again" if running else "stopped (as before)"))
    elif args.command == "status":
        st = srv.state()
        if st is None:
            print("Neo4j is not running")
            return 3
        from src.client import Neo4jSettings, connect

        info = srv.connection_info()
        with connect(Neo4jSettings(uri=info["uri"], user="neo4j", password=info["password"])) as c:
            version = c.server_version()
        print(f"uri      bolt://127.0.0.1:{st['port']}\nversion  {version}\npid      {st['pid']}\n"
              f"data     {srv.home / 'data'}\nheap     {st['heap']}\npagecache {st['pagecache']}")
    elif args.command == "plugin-jar":
        jar = srv.jars.plugin()
        if jar is None:
            raise UserError("building the gnn.* procedures needs Maven and a JDK 17: apt-get install -y maven openjdk-17-jdk-headless")
        print(jar)
    elif args.command == "env":
        st = srv.state()
        if st is None:
            raise UserError("Neo4j is not running; start it with `bash jobs/neo4j.sh start`")
        srv.password()  # a one-line error, not an empty NEO4J_PASSWORD, when the file is gone
        # the password is read from its 0600 file at eval time; values are shell-quoted ('$(touch x)' stays a name)
        print(env_line(f"bolt://127.0.0.1:{st['port']}", srv.password_file))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_cli(lambda: main())
