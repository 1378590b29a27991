"""Dev-time check: a reranker adapter trained by EmbedTune (`embedtune train --task_type reranker`,
PEFT task_type SEQ_CLS with the classification head in modules_to_save) loads in peft on top of
AutoModelForSequenceClassification and scores pairs as `embedtune rerank --adapter` does.

    tools/reference/.venv/bin/python tools/reference/check_reranker_adapter_in_peft.py \
        --model BASE --adapter ADAPTER_DIR --queries Q.jsonl --candidates C.jsonl --scores OUT.jsonl

BASE is the directory training started from (a *ForSequenceClassification cross-encoder, or an
embedding model given a new head: transformers then builds the head at random and peft replaces
it with the adapter's). Q.jsonl / C.jsonl are `embedtune rerank`'s inputs and OUT.jsonl its output
(without --top_k). Prints the max |Δ| between peft's sigmoid(logit) and EmbedTune's scores.
"""
import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--candidates", required=True)
    ap.add_argument("--scores", required=True)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    tok = AutoTokenizer.from_pretrained(args.model)
    base = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    queries = {q.get("id"): q["text"] for q in rows(args.queries)}
    ours = {(s["query_id"], s["id"]): s["score"] for s in rows(args.scores)}
    worst, count = 0.0, 0
    for c in rows(args.candidates):
        batch = tok(queries[c["query_id"]], c["text"], truncation=True, max_length=args.max_length, return_tensors="pt")
        with torch.no_grad():
            score = torch.sigmoid(model(**batch).logits[0, 0]).item()
        worst = max(worst, abs(score - ours[(c["query_id"], c["id"])]))
        count += 1
    print(f"pairs {count}  max |delta| score {worst:.3e}")


if __name__ == "__main__":
    main()
