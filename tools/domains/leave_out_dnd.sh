#!/usr/bin/env bash
# Leave-domains-out evaluation of Drag-and-Drop: for each held-out domain, NDCG@10 etc. on its test
# queries for the base model, its trained library adapter, and the adapters the generator writes
# from 128 and from 16 of the domain's unlabeled training queries (drawn with a fixed seed), and
# from 128 queries of the next held-out domain in the list (the control). Per domain
# OUT/DOMAIN.md and .json; OUT/summary.md: the table and the goals.
#
#   tools/domains/leave_out_dnd.sh LIBRARY ADAPTERS GENERATOR OUT DOMAIN...
#
# LIBRARY: .cache/domains/library; ADAPTERS: `library train`'s output; GENERATOR: `dnd train`'s
# output, trained without DOMAIN...; OUT: query files, generated adapters and tables.
set -euo pipefail
BIN=${BIN:-.build/release/embedtune}
library=$1 adapters=$2 generator=$3 out=$4
shift 4
mkdir -p "$out"
model=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["baseModel"])' "$generator/generator.json")
queries() {  # DOMAIN COUNT FILE: COUNT of the domain's training queries, one per line
  python3 - "$library/$1" "$2" "$3" <<'PY'
import json, random, sys
root, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = {}
for line in open(f"{root}/queries.jsonl", encoding="utf-8"):
    q = json.loads(line); text[q["_id"]] = q["text"]
train = sorted({l.split("\t")[0] for l in open(f"{root}/qrels/train.tsv", encoding="utf-8").read().splitlines()[1:] if l.strip()})
random.Random(7).shuffle(train)
with open(path, "w", encoding="utf-8") as f:
    f.write("".join(" ".join(text[q].split()) + "\n" for q in train[:count]))
PY
}
domains=("$@")
for i in "${!domains[@]}"; do
  domain=${domains[$i]} other=${domains[$(( (i + 1) % ${#domains[@]} ))]}
  queries "$domain" 128 "$out/$domain-128.txt"
  queries "$domain" 16 "$out/$domain-16.txt"
  queries "$other" 128 "$out/$domain-control.txt"
  for kind in 128 16 control; do
    start=$(date +%s.%N)
    "$BIN" dnd generate --generator "$generator" --queries "$out/$domain-$kind.txt" --output "$out/$domain-dnd-$kind" 2>/dev/null
    end=$(date +%s.%N)
    echo "$domain: dnd-$kind generated in $(python3 -c "print(f'{$end-$start:.2f}')") s (process start included)"
  done
  "$BIN" eval --db "$adapters/library.sqlite" --db_dataset "$domain" --db_split test --model "$model" \
    --adapter "$adapters/adapters/$domain" --adapter "$out/$domain-dnd-128" --adapter "$out/$domain-dnd-16" \
    --adapter "$out/$domain-dnd-control" --max_length 128 --output "$out/$domain.json" > "$out/$domain.md"
done
python3 - "$out" "${domains[@]}" <<'EOF2' | tee "$out/summary.md"
import json, statistics, sys
out, domains = sys.argv[1], sys.argv[2:]
print("| held-out domain | base | trained | DnD, 128 queries | DnD, 16 queries | DnD, another domain's 128 (control) | DnD-128 ÷ trained |")
print("|---|---:|---:|---:|---:|---:|---:|")
ratios, beats, control = [], 0, 0
for d in domains:
    named = {r["name"].split(" + ")[-1] if " + " in r["name"] else "base": r["metrics"]["cosine_ndcg@10"]
             for r in json.load(open(f"{out}/{d}.json"))["results"]}
    base, trained, q128, q16, ctl = (named[k] for k in ("base", d, f"{d}-dnd-128", f"{d}-dnd-16", f"{d}-dnd-control"))
    ratios.append(q128 / trained); beats += q128 > base; control += ctl < q128
    print(f"| {d} | {base:.4f} | {trained:.4f} | {q128:.4f} | {q16:.4f} | {ctl:.4f} | {100 * q128 / trained:.1f}% |")
print(f"\nDnD from 128 queries reaches {100 * statistics.mean(ratios):.1f}% of the trained adapters' NDCG@10 on average (goal ≥ 97%), "
      f"beats base on {beats} of {len(domains)} (goal: all), and the control scores below the right queries on {control} of {len(domains)} (goal: all).")
EOF2
