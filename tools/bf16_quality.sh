#!/usr/bin/env bash
# NDCG@10 of the demo (English FAQ, MiniLM) and Chinese (agri-zh, multilingual-e5-small) runs trained
# with the frozen base in fp32 and in bf16 (--base_precision), on the demo's stores (run `make demo`
# and `make demo-zh` first). Writes out/bf16/<lang>-<precision>.json and prints the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release/embedtune}
MPI=(mpirun -np 2 --oversubscribe -x OPENBLAS_NUM_THREADS=1)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=out/bf16
mkdir -p $OUT
for lang in en zh; do
  if [ $lang = en ]; then NAME=faq; CONFIG=configs/minilm-faq.toml; else NAME=agri; CONFIG=configs/e5-agri-zh.toml; fi
  DB=demo-out/$lang/store.sqlite
  MODEL=$(sed -n 's/^model *= *"\(.*\)"/\1/p' "$CONFIG")
  for precision in fp32 bf16; do
    ADAPTER=$OUT/$lang-$precision
    rm -rf "$ADAPTER"
    start=$(date +%s)
    "${MPI[@]}" $BIN train --config "$CONFIG" --db "$DB" --db_dataset $NAME --threads 1 --output_dir "$ADAPTER" \
      --base_precision $precision > "$OUT/$lang-$precision.log" 2>&1
    echo "$lang $precision: trained in $(( $(date +%s) - start )) s"
    $BIN eval --db "$DB" --db_dataset $NAME --db_split test --model "$MODEL" --adapter "$ADAPTER" \
      --output "$OUT/$lang-$precision.json" | grep -E "^\| model \+" || true
  done
done
