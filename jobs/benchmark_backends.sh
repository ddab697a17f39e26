#!/usr/bin/env bash
# Run the same training on several backends and write logs, plots and one comparison table.
#
#   bash jobs/benchmark_backends.sh [--dataset amazon_cs] [--backends neo4j,in_memory] [--ranks 2] [--repeats N]
#        [--out bench_out/compare] [-- training flags, identical for every backend]
#   e.g. bash jobs/benchmark_backends.sh --dataset cora -- --epochs 20 --fanouts 10,10 \
#        --num_layers 2 --hidden_channels 128 --batch_size 64 --lr 0.01
#
# Each backend runs through jobs/launch_training_single_node.sh --backend <name> (the neo4j one
# starts the local server and loads the dataset if needed). Output: <out>/logs/<run>/,
# <out>/plots/ (visualize.py) and <out>/comparison.md. See bench/compare_backends.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's src for loaders/ and bench/ scripts
case "${1:-}" in -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exec "${PYTHON:-python3}" bench/compare_backends.py --help ;; esac
exec "${PYTHON:-python3}" bench/compare_backends.py "$@"
