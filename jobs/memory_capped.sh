#!/usr/bin/env bash
# Run a command with every Python process it starts ($PYTHON) in a memory cgroup of its own (v1, root).
#   bash jobs/memory_capped.sh --limit 2g [--report FILE] -- bash jobs/launch_training_single_node.sh --ranks 2 ...
# Each rank of the launch script then trains under its own kernel limit of --limit bytes: an
# in-memory trainer that would not fit refuses at start (preflight, one line), a trainer that
# outgrows the limit anyway is killed by the kernel (the report says oom_killed). --report appends
# one JSON line per Python process: limit, peak usage, failcnt, OOM kill, exit code
# (src/core/cgroup_run.py).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=""; report=""
while [ $# -gt 0 ]; do
  case "$1" in
    --limit) limit=$2; shift 2 ;;
    --report) report=$(realpath -m "$2"); shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$limit" ] || { echo "error: --limit is required, e.g. --limit 2g (see --help)" >&2; exit 2; }
[ $# -gt 0 ] || { echo "error: give the command after -- (see --help)" >&2; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export GNN_MEMORY_CAP=$limit GNN_MEMORY_CAP_REPORT=$report GNN_CAPPED_PYTHON=${PYTHON:-python3}
export PYTHON="$PWD/jobs/capped_python"
exec "$@"
