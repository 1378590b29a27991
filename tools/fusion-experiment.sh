#!/usr/bin/env bash
# The measurement behind docs/fusion.md: three domain adapters on multilingual-e5-small — the
# English construction FAQ, its Swedish original, and the Chinese agriculture QA set — each trained
# on its domain's training split (mined hard negatives, 2 MPI ranks), then fused by
# `embedtune merge --search` on the domains' held-out questions, and a router built and evaluated.
# Each adapter is trained with --preserve_data on the other domains' training pairs, so it leaves
# their embeddings where the base model puts them and the adapters add up when fused.
# Run after `make converted`; takes ~35 minutes on 2 cores. Outputs in out/fusion/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release/embedtune}
E5=.cache/models/multilingual-e5-small
OUT=out/fusion
DB=$OUT/store.sqlite
FAQ=.cache/pypi/zaragoza-construction-faq/zaragoza_construction_faq/data
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun -np 2 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1)
mkdir -p "$OUT"
cat data/agri-zh/*.jsonl > "$OUT/agri-zh.jsonl"
declare -A SOURCE=([faq-en]=$FAQ/faq-en.jsonl [faq-sv]=$FAQ/faq.jsonl [agri-zh]=$OUT/agri-zh.jsonl)
# The FAQ domains have more headroom over the base than agri-zh (NDCG@10 ~0.67 vs ~0.93): a
# stronger schedule there; agri-zh keeps the demo-zh settings of configs/e5-agri-zh.toml. All at
# e5's own τ = 0.01 (at 0.02 the FAQ adapter cost agri-zh 0.039 NDCG@10 instead of 0.028).
declare -A TRAIN_FLAGS=([faq-en]="--learning_rate 2e-4 --num_train_epochs 2" \
                        [faq-sv]="--learning_rate 2e-4 --num_train_epochs 2" [agri-zh]="")
PRESERVE_WEIGHT=${PRESERVE_WEIGHT:-300}
ADAPTERS=$OUT/adapters-preserve
DOMAINS=(faq-en agri-zh faq-sv)
for d in "${DOMAINS[@]}"; do
  echo "== $d"
  $BIN data import --db "$DB" --db_dataset "$d" --format pairs --input "${SOURCE[$d]}" --replace
  $BIN data split --db "$DB" --db_dataset "$d" --test_size 0.2 --seed 42
  $BIN data export --db "$DB" --db_dataset "$d" --db_split test --format beir --output "$OUT/dev/$d"
  $BIN data export --db "$DB" --db_dataset "$d" --db_split train --format pairs --output "$OUT/$d-train-pairs.jsonl"
done
for d in "${DOMAINS[@]}"; do
  if [ ! -f "$ADAPTERS/$d/adapter_model.safetensors" ]; then
    echo "== train $d (preserving the other domains' training pairs, weight $PRESERVE_WEIGHT)"
    for o in "${DOMAINS[@]}"; do [ "$o" = "$d" ] || cat "$OUT/$o-train-pairs.jsonl"; done > "$OUT/$d-preserve.jsonl"
    "${MPI[@]}" $BIN mine --db "$DB" --db_dataset "$d" --model $E5 --output_format ms-swift --num_negatives 3 --range_max 20 --quiet
    "${MPI[@]}" $BIN train --config configs/e5-agri-zh.toml --db "$DB" --db_dataset "$d" --output_dir "$ADAPTERS/$d" --threads 1 ${TRAIN_FLAGS[$d]} \
      --preserve_data "$OUT/$d-preserve.jsonl" --preserve_weight "$PRESERVE_WEIGHT" | grep -E "train:|eval step|adapter:" || true
  fi
done
A=$(printf "$ADAPTERS/%s," "${DOMAINS[@]}"); A=${A%,}
DEV=(); for d in "${DOMAINS[@]}"; do DEV+=(--dev "$OUT/dev/$d"); done
echo "== merge --search"
$BIN merge --base $E5 --adapters "$A" --search "${DEV[@]}" --search_methods task_arithmetic,dare_ties --max_dev_documents 0 \
    --search_scales 1.0,1.2 --search_rounds 1 --search_objective min_gain_kept \
    --search_report "$OUT/fusion-preserve.md" --fold --output "$OUT/fused-preserve" --force
echo "== router"
for kind in centroid logistic; do
  DOM=(); TEST=()
  for d in "${DOMAINS[@]}"; do
    python3 -c "import json,sys; [print(json.loads(l)['query']) for l in open(sys.argv[1], encoding='utf-8')]" "$OUT/$d-train-pairs.jsonl" > "$OUT/$d-train-queries.txt"
    DOM+=(--domain "$d=$OUT/$d-train-queries.txt"); TEST+=(--test "$d=$OUT/dev/$d/queries.jsonl")
  done
  $BIN route build --model $E5 --kind $kind "${DOM[@]}" "${TEST[@]}" --output "$OUT/router-$kind.json" | tee "$OUT/router-$kind.txt"
done
