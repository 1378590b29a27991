#!/usr/bin/env python3
"""Fixture for EmbeddingQuantizationTests: sentence-transformers' quantize_embeddings of a small
random float32 matrix in every precision, with the ranges calibrated on a second matrix.
Writes Tests/Fixtures/quantization/quantization.json. Dev-time only (the oracle venv)."""
import json, os
import numpy as np
from sentence_transformers.util.quantization import quantize_embeddings

rng = np.random.default_rng(11)
emb = rng.standard_normal((5, 13)).astype(np.float32)
emb[0, 3] = 0.0  # exactly zero: not > 0 in binary
cal = rng.standard_normal((40, 13)).astype(np.float32)
emb[1] = cal.max(axis=0) + 0.5  # above every maximum: clipped to 255
out = {"rows": 5, "dim": 13, "embeddings": emb.flatten().tolist(), "calibration_rows": 40,
       "calibration": cal.flatten().tolist()}
for p in ["int8", "uint8", "binary", "ubinary"]:
    q = quantize_embeddings(emb, precision=p, calibration_embeddings=cal)
    out[p] = q.astype(int).tolist()
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "..", "..", "Tests", "Fixtures", "quantization", "quantization.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(out, f)
print(path)
