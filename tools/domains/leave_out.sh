#!/usr/bin/env bash
# Leave-domains-out evaluation of Text-to-LoRA: for each held-out domain, NDCG@10 etc. on its test
# queries for the base model, its trained library adapter, the adapters T2L generates from each of
# the domain's descriptions (descriptions.json) and as many generated from junk descriptions
# (120 random characters, seeds 1…K); with MULTITASK=DIR also the multi-task adapter
# (`embedtune library multitask`, trained without DOMAIN...). Per domain OUT/DOMAIN.md and .json
# (every adapter's row); OUT/summary.md: the means over descriptions and over junk, and the goals.
#
#   [MULTITASK=DIR] tools/domains/leave_out.sh LIBRARY ADAPTERS HYPER OUT DOMAIN...
#
# LIBRARY: .cache/domains/library; ADAPTERS: `library train`'s output (its store has the domains);
# HYPER: `t2l train`'s output, trained without DOMAIN...; OUT: generated adapters and tables.
set -euo pipefail
BIN=${BIN:-.build/release/embedtune}
library=$1 adapters=$2 hyper=$3 out=$4
shift 4
mkdir -p "$out"
model=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["baseModel"])' "$hyper/hypernetwork.json")
for domain in "$@"; do
  count=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$library/$domain/descriptions.json")
  generated=()
  for k in $(seq 1 "$count"); do
    description=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2]) - 1])' "$library/$domain/descriptions.json" "$k")
    junk=$(python3 -c 'import random,sys; r=random.Random(int(sys.argv[1])); print("".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(120)))' "$k")
    start=$(date +%s.%N)
    "$BIN" t2l generate --hyper "$hyper" --description "$description" --output "$out/$domain-t2l-$k" 2>/dev/null
    end=$(date +%s.%N)
    "$BIN" t2l generate --hyper "$hyper" --description "$junk" --output "$out/$domain-junk-$k" 2>/dev/null
    echo "$domain: generation $(python3 -c "print(f'{$end-$start:.2f}')") s (process start included)"
    generated+=(--adapter "$out/$domain-t2l-$k" --adapter "$out/$domain-junk-$k")
  done
  "$BIN" eval --db "$adapters/library.sqlite" --db_dataset "$domain" --db_split test --model "$model" \
    --adapter "$adapters/adapters/$domain" ${MULTITASK:+--adapter "$MULTITASK"} "${generated[@]}" \
    --max_length 128 --output "$out/$domain.json" > "$out/$domain.md"
done
python3 - "$out" "$@" <<'EOF' | tee "$out/summary.md"
import json, statistics, sys
out, domains = sys.argv[1], sys.argv[2:]
print("| held-out domain | base | trained | multi-task | T2L (mean of descriptions, min–max) | junk (mean, min–max) | T2L's share of the trained gain |")
print("|---|---:|---:|---:|---:|---:|---:|")
shares, beats, right = [], 0, 0
for d in domains:
    rows = json.load(open(f"{out}/{d}.json"))["results"]
    ndcg = lambda suffix: [r["metrics"]["cosine_ndcg@10"] for r in rows if r["name"].split(" + ")[-1].startswith(f"{d}-{suffix}-")]
    named = {r["name"].split(" + ")[-1] if " + " in r["name"] else "base": r["metrics"]["cosine_ndcg@10"] for r in rows}
    base, trained = named["base"], named[d]
    multitask = next((v for k, v in named.items() if k not in ("base", d) and not k.startswith(f"{d}-")), None)
    t2l, junk = ndcg("t2l"), ndcg("junk")
    mt, mj = statistics.mean(t2l), statistics.mean(junk)
    share = (mt - base) / (trained - base)
    shares.append(share); beats += mt > base; right += mt > mj
    mtask = f"{multitask:.4f}" if multitask is not None else "—"
    print(f"| {d} | {base:.4f} | {trained:.4f} | {mtask} | {mt:.4f} ({min(t2l):.4f}–{max(t2l):.4f}) | {mj:.4f} ({min(junk):.4f}–{max(junk):.4f}) | {100 * share:.0f}% |")
print(f"\nT2L keeps {100 * statistics.mean(shares):.0f}% of the trained gain on average (goal ≥ 50%), beats base on "
      f"{beats} of {len(domains)} (goal ≥ 3 of 4), and the descriptions beat junk on {right} of {len(domains)} (goal: all).")
EOF
