#!/usr/bin/env bash
# The project's local Neo4j Community 5.26 server: start | stop | status | env | reset | plugin-jar.
#   bash jobs/neo4j.sh start [--heap 2g] [--pagecache 2g] [--port N]
#   eval "$(bash jobs/neo4j.sh env)"     # exports NEO4J_URI/USER/PASSWORD/DATABASE
# Jars come from Maven Central (jobs/neo4j/pom.xml) and live under data/neo4j with the database.
# When NEO4J_URI is set, your own server is used and nothing is started or stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m src.neo4jdb.local "$@"
