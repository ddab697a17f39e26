"""The two Maven builds behind the local server: Neo4j's own jars resolved from
``jobs/neo4j/pom.xml``, and our jars (the gnn.* procedures plugin, the binary bulk importer)
built from their modules under ``jobs/neo4j/``.

Why a module of its own: both are build steps with their own caches and failure messages
(Maven or a JDK missing, a failed build), independent of starting and stopping a server
(src/neo4jdb/local.py); the loader needs the importer without any server lifecycle.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from src.core.errors import UserError
from src.core.paths import REPO_DIR
from src.neo4jdb.processes import die_with_parent

log = logging.getLogger(__name__)

POM = REPO_DIR / "jobs" / "neo4j" / "pom.xml"
PLUGIN_DIR = REPO_DIR / "jobs" / "neo4j" / "plugin"  # gnn.* procedures (src/neo4jdb/procedures.py)
PLUGIN_JAR = "gnn-procedures.jar"
IMPORTER_DIR = REPO_DIR / "jobs" / "neo4j" / "importer"  # offline bulk import from binary arrays (src/neo4jdb/load/bulk_import.py)
IMPORTER_JAR = "gnn-importer.jar"


def neo4j_version() -> str:
    """The Neo4j version pinned in the pom (single source of truth)."""
    m = re.search(r"<neo4j.version>([^<]+)</neo4j.version>", POM.read_text())
    assert m, f"no <neo4j.version> in {POM}"
    return m.group(1)


@dataclass(frozen=True)
class JarCache:
    """Neo4j's jars of ``version`` in ``lib`` (``.complete`` marks a full copy), and our jars built
    beside it (``<module>-<version>/``), shared by every server using that cache."""

    lib: Path
    version: str

    def resolve(self) -> None:
        """Resolve the Neo4j jars from Maven Central once (idempotent, fast when cached)."""
        if (self.lib / ".complete").exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise UserError("Maven (mvn) is not installed; install it (e.g. `apt-get install -y maven`) to fetch Neo4j")
        _check_java()
        tmp = self.lib.with_name(self.lib.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("resolving Neo4j %s from Maven Central into %s", self.version, self.lib)
        print(f"fetching Neo4j Community {self.version} from Maven Central (once) ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={tmp}"],
            capture_output=True, text=True, preexec_fn=die_with_parent,  # Maven dies with a killed caller
        )
        if proc.returncode != 0:
            raise UserError(f"Maven could not resolve Neo4j {self.version} (exit {proc.returncode}):\n{_tail(proc)}")
        (tmp / ".complete").write_text(self.version)
        shutil.rmtree(self.lib, ignore_errors=True)
        tmp.rename(self.lib)

    def plugin(self) -> Path | None:
        """The gnn.* procedures jar, built once per change; None without Maven/JDK."""
        return self.build(PLUGIN_DIR, PLUGIN_JAR, "the gnn.* procedures plugin")

    def plugin_jar(self) -> Path:
        """Where :meth:`plugin` puts the procedures jar (the server's class path names it)."""
        return self.build_dir(PLUGIN_DIR) / PLUGIN_JAR

    def importer(self) -> Path | None:
        """The binary bulk importer (jobs/neo4j/importer), built once per change; None without Maven/JDK."""
        self.resolve()
        return self.build(IMPORTER_DIR, IMPORTER_JAR, "the binary bulk importer")

    def build(self, module: Path, jar_name: str, what: str) -> Path | None:
        """``module``'s jar, rebuilt by Maven when missing or older than its sources (None without Maven/JDK).

        The build output lives next to the jar cache (``<module>-<version>/`` beside ``lib-<version>``),
        outside the repository and shared by every server using that cache, so a test server in a
        temp dir does not rebuild. Maven writes into a per-process directory and the jar is moved
        into place atomically, so concurrent builds cannot see a half-written jar.
        """
        build = self.build_dir(module)
        jar = build / jar_name
        sources = [module / "pom.xml", *(module / "src").rglob("*")]
        if jar.exists() and jar.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
            return jar
        mvn, javac = shutil.which("mvn"), shutil.which("javac")
        if mvn is None or javac is None:
            return None
        tmp = build.with_name(f"{build.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"building {what} (once per change) ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(module / "pom.xml"), "package", f"-Dgnn.buildDir={tmp}"],
            capture_output=True, text=True, preexec_fn=die_with_parent,  # Maven dies with a killed caller
        )
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise UserError(f"Maven could not build {module / 'pom.xml'} (exit {proc.returncode}):\n{_tail(proc)}")
        build.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / jar_name, jar)
        shutil.rmtree(tmp, ignore_errors=True)
        return jar

    def build_dir(self, module: Path) -> Path:
        return self.lib.with_name(f"{module.name}-{self.version}")


def _tail(proc: subprocess.CompletedProcess) -> str:
    """The last lines Maven printed: where its error is."""
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])


def _check_java() -> None:
    java = shutil.which("java")
    if java is None:
        raise UserError("Java is not installed; Neo4j 5.26 needs Java 17 or 21 (e.g. `apt-get install -y openjdk-17-jre-headless`)")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)', out)
    if m and int(m.group(1)) not in (17, 21):
        raise UserError(f"Neo4j 5.26 needs Java 17 or 21, found Java {m.group(1)}; set JAVA_HOME/PATH to a Java 17 or 21")
