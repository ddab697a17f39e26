#!/usr/bin/env bash
# First run on a fresh machine: install, start the local Neo4j, load Cora, train GraphSAGE on
# 2 ranks for a few epochs with the Neo4j backend, and plot the logs.
#
#   bash jobs/quickstart.sh [training flags]     e.g. bash jobs/quickstart.sh --epochs 5
#
# Extra arguments go to the training script (see python main-neo4j-backend.py --help). Cora comes
# from ../shared/datasets or, in a bare clone, from the copy in src/data/shipped. Output:
# logs/<run>/ and plots/<run>/ with a new run name each time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
case "${1:-}" in -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

bash jobs/install.sh
run=quickstart-$("$PYTHON" -m src.train.run_names cora neo4j)
bash jobs/launch_training_single_node.sh --ranks 2 --backend neo4j --dataset cora \
  --epochs 20 --fanouts 10,10 --num_layers 2 --hidden_channels 128 --batch_size 64 --lr 0.01 \
  --run_name "$run" "$@"
"$PYTHON" visualize.py --log_dir "logs/$run" --out "plots/$run"
echo "quickstart: logs in logs/$run, plots in plots/$run; stop Neo4j with: bash jobs/neo4j.sh stop"
