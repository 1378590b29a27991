#!/usr/bin/env python3
"""Triplets from the Zaragoza FAQ for benchmarks that need real text lengths: each question, its
answer, and 3 other answers drawn with a fixed seed as negatives (ms-swift JSONL on stdout).

    python3 tools/faq_triplets.py > out/bench/faq-triplets.jsonl
"""
import json
import random
import sys

SOURCE = ".cache/pypi/zaragoza-construction-faq/zaragoza_construction_faq/data/faq-en.jsonl"

rows = [json.loads(line) for line in open(sys.argv[1] if len(sys.argv) > 1 else SOURCE, encoding="utf-8")]
rng = random.Random(3)
for i, row in enumerate(rows):
    others = rng.sample([j for j in range(len(rows)) if j != i], 3)
    print(json.dumps({"query": row["q"], "response": row["a"], "rejected_response": [rows[j]["a"] for j in others]},
                     ensure_ascii=False))
