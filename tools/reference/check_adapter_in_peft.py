"""Dev-time check: an adapter trained by EmbedTune loads in peft on top of the transformers
model and gives the same embeddings as `embedtune embed --adapter`.

    tools/reference/.venv/bin/python tools/reference/check_adapter_in_peft.py \
        --model DIR --adapter ADAPTER_DIR --texts FILE.txt --embeddings FILE.npy [--pooling mean|last]

Prints the max |Δ| between peft's embeddings and EmbedTune's (.npy from `embedtune embed`).
"""
import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModel, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--pooling", default="mean", choices=["mean", "last"])
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()

    texts = open(args.texts, encoding="utf-8").read().splitlines()
    tok = AutoTokenizer.from_pretrained(args.model)
    if args.pooling == "last":
        tok.padding_side = "left"
    base = AutoModel.from_pretrained(args.model, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    if args.pooling == "last":
        pooled = hidden[:, -1]
    else:
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
    ours = np.load(args.embeddings)
    theirs = F.normalize(pooled, p=2, dim=1).numpy()
    print(f"texts {len(texts)}  max |delta| {np.abs(ours - theirs).max():.3e}  min cosine {(ours * theirs).sum(1).min():.7f}")


if __name__ == "__main__":
    main()
