#!/usr/bin/env bash
# ogbn-products' shape end to end, unattended: start Neo4j, generate and import the graph, train every backend.
#
#   bash jobs/products_scale.sh [--num_nodes 2449029] [--feature_format int8] [--heap 3g] [--pagecache 2g]
#        [--projection_mb 1400] [--jobs neo4j,full,partitioned] [--limit L] [--partition_method random] [--decode_rows layer]
#        [--out bench_out/products] [-- training flags, replacing bench/products_scale.py's seed flags]
#
#   --num_nodes N        nodes of the products-shaped synthetic graph (edges and split scale at products' degree;
#                        default 2449029, ogbn-products itself: 123.7M stored edges, ~7 GiB of store)
#   --feature_format F   how the loader stores the 100 features: float32, float16, bfloat16 or int8 (default int8:
#                        a quarter of the bytes over Bolt; the trainer decodes to float32)
#   --heap, --pagecache  the local Neo4j's memory (default 3g / 2g); ignored when NEO4J_URI names your server
#   --projection_mb MB   the Neo4j trainer's in-heap projection budget (default 1400; under half the heap)
#   --decode_rows M      when the Neo4j job's int8 rows become float32: layer (default: in GraphSAGE's first layer, the
#                        leanest), step or fetch
#   --jobs, --limit, --partition_method, --out   passed to bench/products_scale.py (see its --help)
#
# Steps: (1) bash jobs/neo4j.sh start (a no-op when it runs); (2) loaders/load_into_neo4j.py --dataset synthetic
# --preset products --method auto (a no-op when the graph is loaded; the disk is checked before generating; the
# fast offline import needs an empty database: GNN_NEO4J_DIR=data/neo4j-products gives a server of its own, else
# the graph goes in by UNWIND, ~10x slower); (3) bench/products_scale.py, which writes <out>/products.md (one row
# per job) and <out>/logs/<run>/.
# With the defaults (3 epochs x 50 steps of batch 1024, fanouts 15,10,5, 2 ranks): ~35 min on 2 cores (bench/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
num_nodes=2449029; format=int8; heap=3g; pagecache=2g; projection=1400; decode=layer; bench=()
while [ $# -gt 0 ]; do
  case "$1" in
    --num_nodes) num_nodes=$2; shift 2 ;;
    --feature_format) format=$2; shift 2 ;;
    --heap) heap=$2; shift 2 ;;
    --pagecache) pagecache=$2; shift 2 ;;
    --projection_mb) projection=$2; shift 2 ;;
    --decode_rows) decode=$2; shift 2 ;;
    --jobs|--limit|--partition_method|--out) bench+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (see bash jobs/products_scale.sh --help)" >&2; exit 2 ;;
  esac
done
case "$num_nodes" in ''|*[!0-9]*) echo "error: --num_nodes must be a positive integer (got '$num_nodes')" >&2; exit 2 ;; esac
dataset="synthetic_products_n${num_nodes}_s0"
if [ -z "${NEO4J_URI:-}" ]; then
  bash jobs/neo4j.sh start --heap "$heap" --pagecache "$pagecache"
fi
"$PYTHON" loaders/load_into_neo4j.py --dataset synthetic --preset products --num_nodes "$num_nodes" \
  --method auto --feature_format "$format"
exec "$PYTHON" bench/products_scale.py --dataset "$dataset" --projection_mb "$projection" --decode_rows "$decode" \
  "${bench[@]}" -- "$@"
