#!/usr/bin/env python3
"""Build the Matryoshka loss oracle, Tests/Fixtures/training/matryoshka_cases.json (dev time only).

sentence-transformers' MatryoshkaLoss around MultipleNegativesRankingLoss (scale 20, cos_sim),
the real classes, fed fixed embeddings through a stand-in module. Each case holds the float32
inputs (queries, and per row its positive then its hard negatives), the Matryoshka dimensions and
weights as given to MatryoshkaLoss (unsorted on purpose: it sorts them, largest first), the loss
and its float64 autograd gradient with respect to the raw (unnormalised) embeddings.

Cases:
  weighted     D = 32, dims [8, 32, 16], weights [2, 1, 0.5], 2 hard negatives per row
  no-full-dim  D = 32, dims [16, 4], default weights (the full dimension is not among them)

The script also checks, in float64, that the loss equals the weighted sum of MNRL on each
truncated and renormalised copy of the embeddings (the definition EmbedTune implements).

Usage (from the repository root, with the venv of tools/reference/README.md):
    tools/reference/.venv/bin/python tools/reference/make_matryoshka_fixtures.py
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_training_fixtures as mt  # noqa: E402  (JSON helpers: F32Row/F64Row rows, write_json_rows)
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss  # noqa: E402

OUT = mt.OUT / "matryoshka_cases.json"
DIM = 32
ROWS = 4
NEGATIVES = 2
CASES = [("weighted", 20250101, [8, 32, 16], [2.0, 1.0, 0.5]),
         ("no-full-dim", 20250102, [16, 4], None)]


def make_set(seed: int) -> dict:
    """ROWS rows of (query, positive, NEGATIVES negatives), unnormalised (norms 0.5–2), rounded
    to float32; positives near their query, negatives farther or random."""
    g = torch.Generator().manual_seed(seed)

    def randn() -> torch.Tensor:
        return torch.randn(DIM, generator=g, dtype=torch.float64)

    def scaled(v: torch.Tensor) -> torch.Tensor:
        return F.normalize(v, dim=0) * (0.5 + 1.5 * torch.rand(1, generator=g, dtype=torch.float64))

    queries, documents = [], []
    for _ in range(ROWS):
        q = randn()
        queries.append(scaled(q))
        documents.append(scaled(F.normalize(q, dim=0) + 0.8 * F.normalize(randn(), dim=0)))
        for k in range(NEGATIVES):
            documents.append(scaled(F.normalize(q, dim=0) + 1.4 * F.normalize(randn(), dim=0)) if k == 0 else scaled(randn()))
    return {"queries": torch.stack(queries).to(torch.float32), "documents": torch.stack(documents).to(torch.float32)}


def matryoshka_case(name: str, seed: int, dims: list[int], weights: list[float] | None) -> dict:
    s = make_set(seed)
    q = s["queries"].to(torch.float64).requires_grad_(True)
    d = s["documents"].to(torch.float64).requires_grad_(True)
    per_row = 1 + NEGATIVES
    positive_index = [i * per_row for i in range(ROWS)]
    # MNRL's columns: anchors, positives, then each negative slot across the rows.
    columns = [q] + [d[[p + k for p in positive_index]] for k in range(per_row)]

    class FixedEmbeddings(torch.nn.Module):
        """Stands in for a SentenceTransformer: feature dict {"column": c} -> column c."""

        def forward(self, features):
            return {"sentence_embedding": columns[features["column"]]}

        def _get_untruncated_embedding_dimension(self) -> int:
            return DIM

    model = FixedEmbeddings()
    loss_fn = MatryoshkaLoss(model, MultipleNegativesRankingLoss(model, scale=20.0), dims, weights)
    loss = loss_fn([{"column": c} for c in range(len(columns))], None)
    loss.backward()

    # The definition, independently: Σ w_d · MNRL(truncate-and-normalise to d).
    with torch.no_grad():
        total = 0.0
        for dim, w in zip(dims, weights or [1.0] * len(dims)):
            qd = F.normalize(s["queries"].to(torch.float64)[:, :dim], dim=1)
            dd = F.normalize(s["documents"].to(torch.float64)[:, :dim], dim=1)
            logits = 20.0 * qd @ dd.T
            total += w * F.cross_entropy(logits, torch.tensor(positive_index)).item()
    assert abs(total - loss.item()) < 1e-12, (total, loss.item())
    mt.log(f"  {name}: MatryoshkaLoss(MNRL) {loss.item():.12f} (dims {dims}, weights {weights})")
    return {"name": name, "dim": DIM, "matryoshka_dims": dims, "matryoshka_weights": weights or [],
            "queries": mt.f32_rows(s["queries"]), "documents": mt.f32_rows(s["documents"]),
            "positive_index": positive_index, "document_row": [j // per_row for j in range(ROWS * per_row)],
            "temperature": 0.05, "loss": loss.item(),
            "d_queries": mt.f64_rows(q.grad), "d_documents": mt.f64_rows(d.grad)}


def main() -> int:
    torch.manual_seed(0)
    cases = [matryoshka_case(*c) for c in CASES]
    mt.write_json_rows(OUT, {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__,
                             "cases": cases})
    mt.log(f"  {hashlib.sha256(OUT.read_bytes()).hexdigest()[:16]}  {OUT.stat().st_size:>9}  {OUT.relative_to(mt.FIXTURES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
