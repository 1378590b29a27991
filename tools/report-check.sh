#!/usr/bin/env bash
# `make report-check`: what `embedtune report` makes of the demo's run, looked at as a picture —
# the report `make demo` writes (demo-out/en/report.html: loss, τ, learning rate and held-out
# NDCG@10 curves, the model card, the eval table and chart), rendered by headless Chromium to
# out/report-check/report.png. Runs the demo first when its report is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPORT=demo-out/en/report.html
OUT=out/report-check
[ -f "$REPORT" ] || tools/demo.sh en
mkdir -p "$OUT"

# A fresh profile each time: Chromium refuses to share one with a running instance.
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --screenshot="$OUT/report.png" --window-size=1200,2600 "file://$PWD/$REPORT" 2>/dev/null
test -s "$OUT/report.png"
grep -c "<polyline" "$REPORT" | xargs printf "report-check: %s curves in $REPORT, screenshot $OUT/report.png\n"
