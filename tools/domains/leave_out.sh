#!/usr/bin/env bash
# Leave-domains-out evaluation of Text-to-LoRA: for each held-out domain, NDCG@10 etc. on its test
# queries for the base model, its trained library adapter, the adapter T2L generates from the
# domain's description, and the one it generates from a junk description (random characters).
#
#   tools/domains/leave_out.sh LIBRARY ADAPTERS HYPER OUT DOMAIN...
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
  description=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0])' "$library/$domain/descriptions.json")
  junk=$(python3 -c 'import random; r=random.Random(7); print("".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789 ") for _ in range(120)))')
  start=$(date +%s.%N)
  "$BIN" t2l generate --hyper "$hyper" --description "$description" --output "$out/$domain-t2l" 2>/dev/null
  end=$(date +%s.%N)
  "$BIN" t2l generate --hyper "$hyper" --description "$junk" --output "$out/$domain-junk" 2>/dev/null
  echo "## $domain (generation $(python3 -c "print(f'{$end-$start:.2f}')") s, process start included)"
  "$BIN" eval --db "$adapters/library.sqlite" --db_dataset "$domain" --db_split test --model "$model" \
    --adapter "$adapters/adapters/$domain" --adapter "$out/$domain-t2l" --adapter "$out/$domain-junk" \
    --max_length 128 --output "$out/$domain.json" | tee "$out/$domain.md"
done
