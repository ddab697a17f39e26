#!/usr/bin/env bash
# Installs what the project needs, idempotently (a few seconds when everything is present):
# Java 17 + Maven (Debian packages) for the local Neo4j, the Python requirements, and the
# Neo4j jars from Maven Central (cached under data/neo4j).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! "$PYTHON" - <<'PY' 2>/dev/null
import re, sys
from importlib.metadata import version
for line in open("requirements.txt"):
    spec = line.split("#")[0].strip()
    if not spec:
        continue
    name = re.split(r"[<>=!~ ]", spec)[0]
    pinned = re.search(r"==\s*([^\s,;]+)", spec)
    have = version(name)  # raises when missing
    if pinned and have.split("+")[0] != pinned.group(1):
        sys.exit(1)
PY
then
  echo "install: pip install -r requirements.txt"
  "$PYTHON" -m pip install -q -r requirements.txt
fi

# The repository's `src` package, importable from any folder (bench/, loaders/ scripts): an editable
# install of this checkout, redone when `import src` resolves elsewhere (e.g. another clone).
here=$PWD
if ! (cd / && "$PYTHON" -c 'import pathlib, sys, src; sys.exit(pathlib.Path(src.__file__).parent != pathlib.Path(sys.argv[1]))' \
      "$here/src") 2>/dev/null; then
  echo "install: pip install -e . (the src package of $here)"
  "$PYTHON" -m pip install -q --no-deps --no-build-isolation --root-user-action=ignore -e .
fi

"$PYTHON" - <<'PY'
from src.neo4jdb.local import LocalNeo4j
LocalNeo4j().install()
PY
echo "install: ok"
