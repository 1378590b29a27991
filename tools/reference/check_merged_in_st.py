"""Dev-time check: a merged model exported by `embedtune merge --fold` loads in
sentence-transformers as it is and reproduces EmbedTune's embeddings.

    tools/reference/.venv/bin/python tools/reference/check_merged_in_st.py \
        --model EXPORTED_DIR --texts FILE.txt --embeddings FILE.npy [--prompt-name query]

EmbedTune's side comes from `embedtune embed --model EXPORTED_DIR --input FILE.txt --output FILE.npy`
(with the same --prompt-name). Prints the max |Δ| and the smallest cosine; exits 1 above --tolerance.
"""
import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from sentence_transformers import SentenceTransformer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--prompt-name", default=None)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    texts = open(args.texts, encoding="utf-8").read().splitlines()
    model = SentenceTransformer(args.model, device="cpu")
    ours = np.load(args.embeddings)
    theirs = model.encode(texts, prompt_name=args.prompt_name, convert_to_numpy=True, batch_size=16)
    if ours.shape != theirs.shape:
        print(f"shape mismatch: embedtune {ours.shape}, sentence-transformers {theirs.shape}")
        sys.exit(1)
    diff = float(np.abs(ours - theirs).max())
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    print(f"{args.model}: {len(texts)} texts, max |Δ| {diff:.3e}, min cosine {cos.min():.7f}")
    sys.exit(0 if diff <= args.tolerance else 1)


if __name__ == "__main__":
    main()
