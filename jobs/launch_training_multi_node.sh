#!/usr/bin/env bash
# Run this machine's rank of a multi-machine job; run the same command on every machine.
#
#   node k of n:  bash jobs/launch_training_multi_node.sh --num_nodes n --node_rank k \
#                      --master_addr <host of rank 0> [--master_port 29500] [--backend neo4j|ladybug|in_memory] [flags]
#
# Network: gloo picks an interface by hostname; set GLOO_SOCKET_IFNAME=<iface> (e.g. eth0) when
# machines have several. Neo4j: either one shared server (export NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD
# on every machine; load the dataset once), or one local server per machine (leave NEO4J_URI unset:
# this script starts the local server and loads the dataset on each machine). Ladybug: each machine
# loads its own copy of data/ladybug/<dataset>.lbdb (--ladybug_path) if it is not there yet.
# Run name: --run_name, else rank 0 picks a new unique one for all; an existing run is refused unless --resume/--overwrite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's src for loaders/ and bench/ scripts
PYTHON=${PYTHON:-python3}

backend=neo4j; dataset=cora; root=""; lb_path=""; have=" "; pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --dataset) dataset="$2"; pass+=("$1" "$2"); shift 2 ;;
    --dataset_root_dir) root="$2"; pass+=("$1" "$2"); shift 2 ;;
    --ladybug_path) lb_path="$2"; pass+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) case "$1" in --num_nodes|--node_rank|--master_addr) have+="$1 " ;; esac; pass+=("$1"); shift ;;
  esac
done
for f in --num_nodes --node_rank --master_addr; do
  case "$have" in *" $f "*) ;; *) echo "error: $f is required for a multi-node job (see --help)" >&2; exit 2 ;; esac
done
script=$("$PYTHON" -m src.backends.registry script "$backend") || exit 2  # the backend's entry script
if [ "$backend" = neo4j ] && [ -z "${NEO4J_URI:-}" ]; then
  bash jobs/neo4j.sh start
  load=("$PYTHON" loaders/load_into_neo4j.py --dataset "$dataset")
  [ -n "$root" ] && load+=(--dataset_root_dir "$root")
  "${load[@]}"
fi
if [ "$backend" = ladybug ]; then
  load=("$PYTHON" loaders/load_into_neo4j.py --backend ladybug --dataset "$dataset")
  [ -n "$root" ] && load+=(--dataset_root_dir "$root")
  [ -n "$lb_path" ] && load+=(--ladybug_path "$lb_path")
  "${load[@]}"
fi
exec "$PYTHON" "$script" "${pass[@]}"
