"""AppCDS archives for our JVMs (the Neo4j server, the bulk importer): classes mapped, not loaded.

Neo4j's start is mostly class loading and verification of ~10k classes: with an archive of
them the server's start took ~40% less CPU here (19.5 -> 12 s CPU to the first answered query
at load average 3). Java 17 has no ``-XX:+AutoCreateSharedArchive`` (Java 19+), so the first JVM
of a class path dumps the archive when it exits (``-XX:ArchiveClassesAtExit``) into a file of its
own, which :meth:`ClassArchive.commit` renames into place once that JVM exited cleanly; later JVMs
map it (``-XX:SharedArchiveFile``). The name is keyed by the class path's jars (path, size,
mtime) and the JVM binary: the JVM refuses an archive whose jars changed and would then start
without one forever, so a rebuilt jar or another JDK gets a new archive instead.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClassArchive:
    """The archive of one kind of JVM (``name``) with one class path, under ``folder``."""

    path: Path  # the committed archive
    partial: Path  # where a dumping JVM writes it (unique per start)

    @classmethod
    def for_classpath(cls, folder: Path, name: str, classpath: list[str]) -> "ClassArchive":
        key = hashlib.sha1()
        for entry in [*classpath, *_jvm_files()]:
            files = sorted(Path(entry[:-1]).glob("*.jar")) if entry.endswith("/*") else [Path(entry)]
            for f in files:
                st = f.stat() if f.exists() else None
                key.update(f"{f}:{st and st.st_size}:{st and st.st_mtime_ns}\n".encode())
        path = Path(folder) / f"{name}-{key.hexdigest()[:16]}.jsa"
        return cls(path, path.with_name(f"{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"))

    def flags(self) -> list[str]:
        """JVM options: map the archive, or dump one at exit when there is none yet."""
        if self.path.exists():
            return [f"-XX:SharedArchiveFile={self.path}"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return [f"-XX:ArchiveClassesAtExit={self.partial}"]

    def commit(self, clean_exit: bool) -> None:
        """After the JVM exited: keep what it dumped (if it exited cleanly), drop older archives of this name."""
        if not (clean_exit and self.partial.exists() and self.partial.stat().st_size):
            self.partial.unlink(missing_ok=True)
            return
        os.replace(self.partial, self.path)
        prefix = self.path.name.rsplit("-", 1)[0] + "-"
        for old in self.path.parent.glob(f"{prefix}*.jsa"):  # other jar sets; a JVM mapping one keeps its copy
            if old != self.path:
                old.unlink(missing_ok=True)


def _jvm_files() -> list[str]:
    """The java launcher and its libjvm: another JDK build means another archive."""
    java = shutil.which("java")
    if java is None:
        return []
    java = os.path.realpath(java)
    return [java, str(Path(java).parent.parent / "lib" / "server" / "libjvm.so")]
