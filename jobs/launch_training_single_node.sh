#!/usr/bin/env bash
# Launch N training ranks on this machine (data-parallel over gloo) and wait for all of them.
#
#   bash jobs/launch_training_single_node.sh [--ranks 2] [--backend neo4j|ladybug|in_memory] [training flags]
#   e.g. bash jobs/launch_training_single_node.sh --dataset cora --epochs 20
#
# neo4j backend: starts the local Neo4j unless NEO4J_URI is set, and loads the dataset into it
# if it is not there yet; ladybug backend: loads the dataset into its Ladybug file (default
# data/ladybug/<dataset>.lbdb, --ladybug_path) if needed, no server. Every other flag goes to
# main-neo4j-backend.py / main-ladybug-backend.py / in-memory-alternative.py (see their --help).
# Fails (non-zero) if any rank fails, naming it; prints where the logs are. Interrupted (Ctrl-C,
# SIGINT, SIGTERM): stops the ranks and exits 130 (INT) or 143 (TERM), saying how to --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's src for loaders/ and bench/ scripts
PYTHON=${PYTHON:-python3}

ranks=2; backend=neo4j; dataset=cora; root=""; run_name=""; log_dir=logs; lb_path=""; pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ranks) ranks="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    --dataset) dataset="$2"; pass+=("$1" "$2"); shift 2 ;;
    --dataset_root_dir) root="$2"; pass+=("$1" "$2"); shift 2 ;;
    --run_name) run_name="$2"; shift 2 ;;
    --log_dir) log_dir="$2"; pass+=("$1" "$2"); shift 2 ;;
    --ladybug_path) lb_path="$2"; pass+=("$1" "$2"); shift 2 ;;
    --num_nodes|--node_rank|--master_port) echo "error: $1 is set by this script (use --ranks)" >&2; exit 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done
case "$ranks" in (''|*[!0-9]*|0) echo "error: --ranks must be a positive integer (got '$ranks')" >&2; exit 2 ;; esac
script=$("$PYTHON" -m src.backends.registry script "$backend") || exit 2  # the backend's entry script
run_name=${run_name:-$("$PYTHON" -m src.train.run_names "$dataset" "$backend")}  # unique; from the dataset's name, not its path

# An interrupt is never a finished run: remember it, stop the ranks, and report it at the end.
# Background ranks of a script ignore SIGINT, so they get TERM (and CONT, should one be stopped).
interrupted=""; pids=(); child=""
on_signal() {
  interrupted=$1
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true; kill -CONT "${pids[@]}" 2>/dev/null || true
    (sleep "${GRACE_S:-15}"; kill -KILL "${pids[@]}") >/dev/null 2>&1 &
  fi
}
interrupted_exit() {
  local code=130; [ "$interrupted" = TERM ] && code=143
  echo "error: interrupted by SIG$interrupted $1; the run did not finish. Resume it from its last checkpoint" \
       "with the same command plus --run_name $run_name --resume" >&2
  exit "$code"
}
trap 'on_signal INT' INT; trap 'on_signal TERM' TERM
run_step() {  # run_step WHAT CMD...: a step before training, in the background (bash would run a trap
  local what=$1; shift  # only once a foreground child ended)
  "$@" & child=$!
  local rc=0
  set +e; wait "$child"; rc=$?
  while [ -n "$interrupted" ] && kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
  set -e; child=""
  if [ "$rc" -ne 0 ] && [ -n "$interrupted" ]; then interrupted_exit "$what"; fi
  return "$rc"
}

if [ "$backend" = neo4j ]; then
  if [ -z "${NEO4J_URI:-}" ]; then
    run_step "while starting Neo4j" bash jobs/neo4j.sh start
  fi
  load=("$PYTHON" loaders/load_into_neo4j.py --dataset "$dataset")
  [ -n "$root" ] && load+=(--dataset_root_dir "$root")
  run_step "while loading $dataset" "${load[@]}"
fi
if [ "$backend" = ladybug ]; then
  load=("$PYTHON" loaders/load_into_neo4j.py --backend ladybug --dataset "$dataset")
  [ -n "$root" ] && load+=(--dataset_root_dir "$root")
  [ -n "$lb_path" ] && load+=(--ladybug_path "$lb_path")
  run_step "while loading $dataset" "${load[@]}"
fi
[ -n "$interrupted" ] && interrupted_exit "before training began"

port=$("$PYTHON" -c "from src.core.ports import free_port; print(free_port())")
declare -A rank_of
for ((k = 0; k < ranks; k++)); do
  "$PYTHON" "$script" "${pass[@]}" --num_nodes "$ranks" --node_rank "$k" \
    --master_addr 127.0.0.1 --master_port "$port" --run_name "$run_name" &
  pids+=($!); rank_of[$!]=$k
done
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# When a rank fails, the others notice the lost peer within seconds (a hung one within the 60 s
# collective timeout) and print their own one-line error; whoever still runs after GRACE_S is stopped.
GRACE_S=${GRACE_S:-15}
first_failed=""; watchdog=""
while [ ${#rank_of[@]} -gt 0 ]; do
  done_pid=""
  set +e; wait -n -p done_pid "${!rank_of[@]}"; rc=$?; set -e
  [ -n "${done_pid:-}" ] || continue  # a trapped signal interrupted the wait: keep waiting for the ranks
  done_rank=${rank_of[$done_pid]}; unset "rank_of[$done_pid]"
  if [ "$rc" -ne 0 ] && [ -z "$first_failed" ] && [ -z "$interrupted" ]; then
    how="exit $rc"
    if [ "$rc" -gt 128 ]; then how="killed by signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"; fi
    first_failed="rank $done_rank stopped first ($how)"
    if [ ${#rank_of[@]} -gt 0 ]; then
      others=("${!rank_of[@]}")
      # TERM, and CONT so a stopped (SIGSTOP) rank receives it; KILL whatever ignores both
      (sleep "$GRACE_S"; kill "${others[@]}"; kill -CONT "${others[@]}"; sleep 5; kill -KILL "${others[@]}") \
        >/dev/null 2>&1 &
      watchdog=$!
    fi
  fi
done
if [ -n "$watchdog" ]; then kill "$watchdog" 2>/dev/null || true; fi
trap - EXIT
[ -n "$interrupted" ] && interrupted_exit "during training (logs in $log_dir/$run_name/)"
if [ -n "$first_failed" ]; then
  echo "error: $first_failed, the job is stopped; the ranks' own errors are above, logs in $log_dir/$run_name/rank<k>.log" >&2
  exit 1
fi
echo "done: logs in $log_dir/$run_name/ (rank<k>.jsonl, rank<k>.log); plot with: $PYTHON visualize.py --log_dir $log_dir"
