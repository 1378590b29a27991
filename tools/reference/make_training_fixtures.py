#!/usr/bin/env python3
"""Build the Python-oracle fixtures for EmbedTune's *training* code (loss + LoRA gradients).

This is a *dev-time* tool, like make_fixtures.py. Python is never a runtime dependency
of EmbedTune; this script only (re)generates small, committed files under
Tests/Fixtures/training/ that the Swift test-suite compares against.

What it writes (formats: Tests/Fixtures/reference/README.md, section "training/"):

  Tests/Fixtures/training/infonce_cases.json   InfoNCE loss oracle: small random embeddings,
                                               the loss and dL/dqueries, dL/ddocuments (float64
                                               autograd) for every option of ms-swift's InfoNCE
                                               loss, a per-row-temperature variant, the
                                               sentence-transformers MultipleNegativesRankingLoss
                                               equivalent, and hard-negative truncation
  Tests/Fixtures/training/peft-qwen3/          one InfoNCE step through a PEFT LoRA adapter on
  Tests/Fixtures/training/peft-bert/           tiny-qwen3 / tiny-bert-zh: the adapter (PEFT's own
                                               files), the batch, the gradient of every LoRA
                                               weight (grads.safetensors, PEFT's key names) and
                                               meta.json (loss, embeddings, token ids, versions)
  Tests/Fixtures/training/peft-roundtrip/      a PEFT adapter for tiny-qwen3 + the embeddings that
                                               PeftModel gives with it (loading an adapter trained
                                               elsewhere)

The loss semantics are those of ms-swift's InfoNCE loss (`InfonceLoss` in
swift/loss/embedding.py of ms-swift 4.x; the same code is the `infonce_loss` function
in swift/plugin/loss.py of ms-swift 3.x). ms-swift is not imported (it pulls in a large
dependency tree); its math is re-implemented below, row by row. Pass the ms-swift wheel
(or an unpacked copy) with --ms-swift to cross-check every ms-swift case against the
original code, executed with the distributed helpers stubbed out:

    pip download --no-deps ms-swift==4.6.0 -d /tmp/ms-swift
    tools/reference/.venv/bin/python tools/reference/make_training_fixtures.py \\
        --ms-swift /tmp/ms-swift/ms_swift-4.6.0-py3-none-any.whl

Everything is built locally (no model hub). Output is deterministic: running the script
twice produces byte-identical files.

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/make_training_fixtures.py [--ms-swift PATH ...]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import hashlib
import json
import os
import shutil
import sys
import types
import zipfile
from pathlib import Path

# Never touch the network / model hub, and keep the Rust tokenizer single-threaded.
# Must be set before the imports.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import numpy as np  # noqa: E402
import peft  # noqa: E402
import safetensors  # noqa: E402
import sentence_transformers  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

# --------------------------------------------------------------------------------------
# Paths and constants
# --------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures"
OUT = FIXTURES / "training"
QWEN3_DIR = FIXTURES / "tiny-qwen3"
BERT_DIR = FIXTURES / "tiny-bert-zh"

DIM = 16  # embedding size of the synthetic loss cases
SIZE_BUDGET = 1_500_000  # bytes, all of Tests/Fixtures/training/


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------
# JSON helpers (same conventions as make_encoder_fixtures.py)
# --------------------------------------------------------------------------------------


class F32Row(list):
    """A row of float32 values, written as the *shortest* decimal that round-trips to the
    same float32 (numpy's float32 repr, e.g. 0.041581806). Parse as Float, or as Double
    then round to Float: both give back the exact float32."""


class F64Row(list):
    """A row of float64 values, written as Python's repr (the shortest decimal that
    round-trips to the same double, e.g. -0.0123456789012345). Parse as Double."""


def f32_rows(t: torch.Tensor) -> list[F32Row]:
    a = t.detach().to(torch.float32).cpu().numpy()
    return [F32Row(row.tolist()) for row in a]


def f64_rows(t: torch.Tensor) -> list[F64Row]:
    a = t.detach().to(torch.float64).cpu().numpy()
    return [F64Row(row.tolist()) for row in a]


def f32_str(x: float) -> str:
    s = str(np.float32(x))
    assert np.isfinite(np.float32(x)) and float(np.float32(s)) == float(np.float32(x)), s
    return s


def f64_str(x: float) -> str:
    assert np.isfinite(x), x
    s = repr(float(x))
    assert float(s) == float(x), s
    return s


def dumps_rows(obj, level: int = 0) -> str:
    """JSON with 2-space indentation, except that a list of numbers (an id row, a
    vector, a gradient row) stays on one line: compact and diffable."""
    pad = "  " * level
    if isinstance(obj, F32Row):
        return "[" + ", ".join(f32_str(x) for x in obj) + "]"
    if isinstance(obj, F64Row):
        return "[" + ", ".join(f64_str(x) for x in obj) + "]"
    if isinstance(obj, float):
        return f64_str(obj)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}  {json.dumps(k, ensure_ascii=False)}: {dumps_rows(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in obj):
        items = [f"{pad}  {dumps_rows(v, level + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, list) and any(isinstance(x, float) for x in obj):
        return "[" + ", ".join(f64_str(x) if isinstance(x, float) else json.dumps(x) for x in obj) + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json_rows(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_rows(obj) + "\n", encoding="utf-8")


def fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "peft": peft.__version__,
        "safetensors": safetensors.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "numpy": np.__version__,
    }


# --------------------------------------------------------------------------------------
# 1. InfoNCE, ms-swift semantics (re-implemented row by row)
# --------------------------------------------------------------------------------------
#
# Layout (as in the fixture): `queries` [B, D]; `documents` [M, D] = row 0's positive,
# row 0's hard negatives, row 1's positive, ...; `positive_index[i]` = index of row i's
# positive in `documents`; `document_row[j]` = the row that document j belongs to.
#
# ms-swift (swift/loss/embedding.py, InfonceLoss.__call__, single process) for row i:
#   use_batch (INFONCE_USE_BATCH, default True):
#     qd   = q_i . d_j for ALL documents j                     (target: positive_index[i])
#     qq   = q_i . q_k for all k, k == i set to -inf           (INFONCE_INCLUDE_QQ)
#     dd   = p_i . d_j for all j, j == positive_index[i] -inf  (INFONCE_INCLUDE_DD)
#     mask (INFONCE_MASK_FAKE_NEGATIVE): threshold = detach(q_i . p_i) + margin;
#          qd and qq entries > threshold become -inf (dd is never threshold-masked).
#          The comparison is on the raw dot products, before the temperature.
#     logits = cat(qd, qq, dd) / temperature
#   not use_batch: logits = (q_i . own positive, q_i . own negatives) / temperature,
#     target 0; qq / dd / mask are ignored by ms-swift on this path.
#   loss = mean over rows of cross_entropy(logits_i, target_i).
# ms-swift has one scalar temperature; `temperatures` (one per row) is EmbedTune's
# extension: row i's logits are divided by temperatures[i].


def infonce_loss(queries: torch.Tensor, documents: torch.Tensor, positive_index: list[int],
                 document_row: list[int], temperatures: list[float], use_batch: bool,
                 mask_fake_negative: bool = False, fake_negative_margin: float = 0.1,
                 include_qq: bool = False, include_dd: bool = False,
                 masked: dict | None = None) -> torch.Tensor:
    """The loss for one batch. If `masked` is a dict, the (row, column) pairs that the
    fake-negative mask removed are appended to masked["qd"] / masked["qq"]."""
    B = queries.shape[0]
    neg_inf = torch.tensor(float("-inf"), dtype=queries.dtype)
    losses = []
    for i in range(B):
        q = queries[i]
        if not use_batch:
            own = [j for j in range(documents.shape[0]) if document_row[j] == i]
            assert own[0] == positive_index[i], "a row's positive must come first"
            logits = documents[own] @ q
            target = 0
        else:
            qd = documents @ q
            target = positive_index[i]
            threshold = qd[target].detach() + fake_negative_margin
            if mask_fake_negative:
                hit = qd > threshold
                if masked is not None:
                    masked["qd"] += [[i, int(j)] for j in torch.nonzero(hit).flatten()]
                qd = torch.where(hit, neg_inf, qd)
            parts = [qd]
            if include_qq:
                qq = queries @ q
                qq = torch.where(torch.arange(B) == i, neg_inf, qq)
                if mask_fake_negative:
                    hit = qq > threshold
                    if masked is not None:
                        masked["qq"] += [[i, int(k)] for k in torch.nonzero(hit).flatten()]
                    qq = torch.where(hit, neg_inf, qq)
                parts.append(qq)
            if include_dd:
                dd = documents @ documents[positive_index[i]]
                dd = torch.where(torch.arange(documents.shape[0]) == positive_index[i], neg_inf, dd)
                parts.append(dd)
            logits = torch.cat(parts)
        logits = logits / temperatures[i]
        losses.append(F.cross_entropy(logits.unsqueeze(0), torch.tensor([target])))
    return torch.stack(losses).mean()


def truncate_negatives(document_row: list[int], positive_index: list[int], hard_negatives: int) -> list[int]:
    """ms-swift's INFONCE_HARD_NEGATIVES when a row has *more* negatives than that:
    `split_part[:hard_negatives + 2]`, i.e. keep the row's first `hard_negatives`
    negatives. (A row with fewer negatives is padded by re-sampling its negatives with
    np.random.choice, which is random and therefore not part of the fixture.)
    Returns the indices of the kept documents."""
    kept = []
    for i, p in enumerate(positive_index):
        own = [j for j in range(len(document_row)) if document_row[j] == i]
        assert own[0] == p and len(own) - 1 >= hard_negatives
        kept += own[: hard_negatives + 1]
    return kept


# --------------------------------------------------------------------------------------
# 1a. Optional cross-check against ms-swift's own code
# --------------------------------------------------------------------------------------


def load_ms_swift_loss(path: Path):
    """Compile ms-swift's `_parse_multi_negative_sentences` and its InfoNCE loss from the
    wheel (or unpacked tree) at `path`, without importing ms-swift: only those two
    definitions are taken from the module's AST and executed with the distributed
    helpers stubbed (world size 1). Returns (callable(sentences, labels), description)."""
    candidates = ["swift/loss/embedding.py", "swift/plugin/loss.py"]  # ms-swift 4.x, 3.x
    source, where = None, None
    if path.is_file():
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for c in candidates:
                if c in names:
                    source, where = z.read(c).decode("utf-8"), f"{path.name}:{c}"
                    break
    else:
        for c in candidates:
            if (path / c).is_file():
                source, where = (path / c).read_text(encoding="utf-8"), str(path / c)
                break
    assert source is not None, f"no ms-swift loss source found in {path}"
    tree = ast.parse(source)
    wanted = {"_parse_multi_negative_sentences", "InfonceLoss", "infonce_loss"}
    nodes = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in wanted]
    assert any(n.name == "_parse_multi_negative_sentences" for n in nodes), where

    class BaseLoss:  # stand-in for swift.loss.base.BaseLoss
        is_megatron = False
        args = None

    def get_dist_setting():  # (rank, local_rank, world_size, local_world_size)
        return 0, 0, 1, 1

    def unavailable(*_a, **_k):
        raise AssertionError("distributed gather called in a single-process cross-check")

    ns = {
        "np": np, "os": os, "torch": torch, "nn": torch.nn, "F": F, "dist": torch.distributed,
        "strtobool": transformers.utils.strtobool, "gather_object": unavailable,
        "sequence_parallel": types.SimpleNamespace(dp_group=None), "get_dist_setting": get_dist_setting,
        "BaseLoss": BaseLoss,
    }
    exec(compile(ast.Module(body=nodes, type_ignores=[]), where, "exec"), ns)  # noqa: S102
    if "InfonceLoss" in ns:
        fn = ns["InfonceLoss"].__new__(ns["InfonceLoss"])  # no __init__ (trainer args) needed
        call = lambda s, l: fn({"last_hidden_state": s}, l)  # noqa: E731
        return call, f"{where} (InfonceLoss)"
    fn = ns["infonce_loss"]
    return (lambda s, l: fn({"last_hidden_state": s}, l)), f"{where} (infonce_loss)"


@contextlib.contextmanager
def ms_swift_environment(case: dict):
    """ms-swift reads its options from environment variables; ms-swift 3.x also imports
    get_dist_setting from swift.utils inside the function, so a stub module is installed."""
    env = {
        "INFONCE_TEMPERATURE": repr(case["temperature"]),
        "INFONCE_USE_BATCH": str(case["options"]["use_batch"]),
        "INFONCE_MASK_FAKE_NEGATIVE": str(case["options"]["mask_fake_negative"]),
        "INFONCE_FAKE_NEG_MARGIN": repr(case["options"]["fake_negative_margin"]),
        "INFONCE_INCLUDE_QQ": str(case["options"]["include_qq"]),
        "INFONCE_INCLUDE_DD": str(case["options"]["include_dd"]),
    }
    if "hard_negatives" in case:
        env["INFONCE_HARD_NEGATIVES"] = str(case["hard_negatives"])
    saved_env = {k: os.environ.get(k) for k in list(env) + ["INFONCE_HARD_NEGATIVES"]}
    saved_mods = {k: sys.modules.get(k) for k in ["swift", "swift.utils"]}
    swift = types.ModuleType("swift")
    utils = types.ModuleType("swift.utils")
    utils.get_dist_setting = lambda: (0, 0, 1, 1)
    swift.utils = utils
    sys.modules.update({"swift": swift, "swift.utils": utils})
    os.environ.pop("INFONCE_HARD_NEGATIVES", None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for k, v in saved_mods.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def ms_swift_check(loss_fn, case: dict, q: torch.Tensor, d: torch.Tensor) -> float:
    """Run ms-swift's code on the case (its input layout: [q0, p0, n0.., q1, p1, ..] and
    labels [1, 0.., 1, 0..] over the non-anchor rows); return the max abs difference of
    loss and gradients with respect to the fixture's values."""
    q = q.detach().clone().requires_grad_(True)
    d = d.detach().clone().requires_grad_(True)
    rows, labels = [], []
    for i in range(q.shape[0]):
        rows.append(q[i])
        for j, r in enumerate(case["document_row"]):
            if r == i:
                rows.append(d[j])
                labels.append(1 if j == case["positive_index"][i] else 0)
    sentences = torch.stack(rows)
    with ms_swift_environment(case):
        loss = loss_fn(sentences, torch.tensor(labels))
    loss.backward()
    diffs = [abs(loss.item() - case["loss"]),
             (q.grad - torch.tensor(case["d_queries"], dtype=torch.float64)).abs().max().item(),
             (d.grad - torch.tensor(case["d_documents"], dtype=torch.float64)).abs().max().item()]
    return max(diffs)


# --------------------------------------------------------------------------------------
# 1b. The synthetic embedding sets
# --------------------------------------------------------------------------------------


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm()


def make_set(seed: int, negatives: list[int]) -> dict:
    """B = len(negatives) rows of (query, positive, negatives...), D = 16, unit norm
    (normalized in float64, then rounded to float32: the fixture's inputs are these
    float32 values; all the math below runs in float64 on them).

    Built so that every option has something to do:
      * positives are close to their query (cos ~0.8), negatives less so (cos ~0.6) or
        random;
      * row 0's second negative is a near-duplicate of query 0 (cos ~0.999): a fake
        negative that the mask must remove;
      * query 3 is a near-duplicate of query 2, so the q-q block has entries above the
        threshold too."""
    g = torch.Generator().manual_seed(seed)

    def randn() -> torch.Tensor:
        return torch.randn(DIM, generator=g, dtype=torch.float64)

    queries, documents, positive_index, document_row = [], [], [], []
    for i, n in enumerate(negatives):
        q = unit(randn())
        if i == 3:
            q = unit(queries[2] + 0.08 * unit(randn()))
        queries.append(q)
        positive_index.append(len(documents))
        document_row.append(i)
        documents.append(unit(q + 0.75 * unit(randn())))
        for k in range(n):
            if i == 0 and k == 1:
                d = unit(q + 0.04 * unit(randn()))  # the fake negative
            elif k % 2 == 0:
                d = unit(q + 1.3 * unit(randn()))  # a hard negative
            else:
                d = unit(randn())  # an unrelated one
            documents.append(d)
            document_row.append(i)
    q32 = torch.stack(queries).to(torch.float32)
    d32 = torch.stack(documents).to(torch.float32)
    return {"negatives": negatives, "queries": q32, "documents": d32,
            "positive_index": positive_index, "document_row": document_row}


OPTION_DEFAULTS = {"use_batch": True, "mask_fake_negative": False, "fake_negative_margin": 0.1,
                   "include_qq": False, "include_dd": False}

# (case name, temperature, options). Temperatures differ between cases on purpose.
MS_SWIFT_CASES = [
    ("use_batch", 0.05, {}),
    ("no_batch", 0.1, {"use_batch": False}),
    ("mask_fake_negative", 0.05, {"mask_fake_negative": True}),
    ("include_qq", 0.07, {"include_qq": True}),
    ("include_dd", 0.07, {"include_dd": True}),
    ("qq_dd_mask", 0.05, {"include_qq": True, "include_dd": True, "mask_fake_negative": True}),
]
PER_ROW_TEMPERATURES = [0.03, 0.05, 0.08, 0.04]
MASK_GAP = 1e-3  # every score compared with a threshold stays at least this far from it


def run_case(name: str, kind: str, s: dict, temperature, options: dict, hard_negatives: int | None = None) -> dict:
    """Compute loss and gradients (float64 autograd) for one case and build its record."""
    opts = {**OPTION_DEFAULTS, **options}
    B = s["queries"].shape[0]
    temps = list(temperature) if isinstance(temperature, list) else [temperature] * B
    q = s["queries"].to(torch.float64).requires_grad_(True)
    d = s["documents"].to(torch.float64).requires_grad_(True)
    pos, rows = s["positive_index"], s["document_row"]
    kept = list(range(d.shape[0]))
    if hard_negatives is not None:
        kept = truncate_negatives(rows, pos, hard_negatives)
    # Re-index positives/rows to the kept documents (identity when nothing is truncated).
    d_used = d[kept]
    pos_used = [kept.index(p) for p in pos]
    rows_used = [rows[j] for j in kept]
    masked = {"qd": [], "qq": []}
    loss = infonce_loss(q, d_used, pos_used, rows_used, temps, opts["use_batch"], opts["mask_fake_negative"],
                        opts["fake_negative_margin"], opts["include_qq"], opts["include_dd"], masked)
    loss.backward()
    record = {"name": name, "kind": kind, "dim": DIM,
              "queries": f32_rows(s["queries"]), "documents": f32_rows(s["documents"]),
              "positive_index": pos, "document_row": rows}
    if isinstance(temperature, list):
        record["temperatures"] = temps
    else:
        record["temperature"] = temperature
    record["options"] = opts
    if hard_negatives is not None:
        record["hard_negatives"] = hard_negatives
        record["kept_documents"] = kept
    if opts["mask_fake_negative"] and opts["use_batch"]:
        # Make sure no score sits on the threshold (a float32 implementation must make
        # the same decisions), and that the mask really removes something.
        with torch.no_grad():
            qd = q @ d_used.T
            thr = qd[torch.arange(B), pos_used].unsqueeze(1) + opts["fake_negative_margin"]
            gaps = [(qd - thr).abs()]
            if opts["include_qq"]:
                qq = q @ q.T
                gaps.append(((qq - thr).abs() + torch.eye(B) * 1e9))
            gap = min(x.min().item() for x in gaps)
        assert gap > MASK_GAP, f"{name}: a score is within {gap} of its threshold"
        assert masked["qd"], f"{name}: the mask removed nothing"
        record["masked_qd"] = masked["qd"]
        if opts["include_qq"]:
            assert masked["qq"], f"{name}: the q-q mask removed nothing"
            record["masked_qq"] = masked["qq"]
    record["loss"] = loss.item()
    record["d_queries"] = f64_rows(q.grad)
    record["d_documents"] = f64_rows(d.grad)
    return record


def mnrl_case(s: dict, reference: dict) -> dict:
    """sentence-transformers' MultipleNegativesRankingLoss (scale 20, cos_sim), the real
    class, fed the fixed embeddings through a stand-in module. Its candidates are all
    positives, then every row's first negative, then every row's second negative, ...
    (the row's own positive is the target); it needs the same number of negatives per
    row. `reference` is the ms-swift use_batch case at temperature 0.05 on the same
    embeddings: the losses agree up to cos_sim re-normalizing the float32 inputs."""
    B = s["queries"].shape[0]
    n_neg = s["negatives"][0]
    assert all(n == n_neg for n in s["negatives"])
    q = s["queries"].to(torch.float64).requires_grad_(True)
    d = s["documents"].to(torch.float64).requires_grad_(True)
    pos = s["positive_index"]
    columns = [q, d[pos]] + [d[[p + 1 + k for p in pos]] for k in range(n_neg)]

    class FixedEmbeddings(torch.nn.Module):
        """Stands in for a SentenceTransformer: feature dict {"column": c} -> column c."""

        def forward(self, features):
            return {"sentence_embedding": columns[features["column"]]}

    loss_fn = MultipleNegativesRankingLoss(FixedEmbeddings(), scale=20.0)
    loss = loss_fn([{"column": c} for c in range(len(columns))], None)
    loss.backward()

    # The identity, checked exactly: on float64-normalized inputs, MNRL = InfoNCE(t = 0.05),
    # and MNRL's gradient = InfoNCE's gradient projected through the normalization
    # (x -> x/|x| has Jacobian (I - x^ x^T)/|x|).
    with torch.no_grad():
        qn = F.normalize(s["queries"].to(torch.float64), dim=1).requires_grad_(True)
        dn = F.normalize(s["documents"].to(torch.float64), dim=1).requires_grad_(True)
    with torch.enable_grad():
        ref = infonce_loss(qn, dn, pos, s["document_row"], [0.05] * B, use_batch=True)
        ref.backward()

    def project(grad, x):
        x = x.to(torch.float64)
        xn = F.normalize(x, dim=1)
        return (grad - (grad * xn).sum(1, keepdim=True) * xn) / x.norm(dim=1, keepdim=True)

    assert abs(loss.item() - ref.item()) < 1e-12, (loss.item(), ref.item())
    assert (project(qn.grad, s["queries"]) - q.grad).abs().max() < 1e-10
    assert (project(dn.grad, s["documents"]) - d.grad).abs().max() < 1e-10
    diff = abs(loss.item() - reference["loss"])
    assert diff < 1e-5, diff
    log(f"  mnrl: MultipleNegativesRankingLoss {loss.item():.12f} vs ms-swift use_batch t=0.05 "
        f"{reference['loss']:.12f} (diff {diff:.1e}; 0 to 1e-12 on float64-normalized inputs)")
    return {"name": "mnrl", "kind": "sentence-transformers-mnrl", "dim": DIM,
            "queries": f32_rows(s["queries"]), "documents": f32_rows(s["documents"]),
            "positive_index": pos, "document_row": s["document_row"], "temperature": 0.05,
            "options": {**OPTION_DEFAULTS}, "scale": 20.0, "similarity": "cos_sim",
            "loss": loss.item(), "infonce_loss": reference["loss"],
            "d_queries": f64_rows(q.grad), "d_documents": f64_rows(d.grad)}


def build_infonce_cases(ms_swift: list) -> dict:
    sets = {"ragged": make_set(20240601, [3, 1, 2, 3]),
            "uniform": make_set(20240602, [2, 2, 2, 2])}
    cases = []
    for set_name, s in sets.items():
        for name, t, opts in MS_SWIFT_CASES:
            cases.append(run_case(f"{set_name}/{name}", "ms-swift", s, t, opts))
        cases.append(run_case(f"{set_name}/per_row_temperature", "per-row-temperature", s,
                              PER_ROW_TEMPERATURES, {}))
    uniform_use_batch = next(c for c in cases if c["name"] == "uniform/use_batch")
    cases.append(mnrl_case(sets["uniform"], uniform_use_batch))
    trunc = make_set(20240603, [3, 2, 3, 2])
    cases.append(run_case("padding", "ms-swift", trunc, 0.05, {}, hard_negatives=2))

    # Sanity: the per-row temperature with all temperatures equal is the plain case.
    s = sets["ragged"]
    q, d = s["queries"].to(torch.float64), s["documents"].to(torch.float64)
    a = infonce_loss(q, d, s["positive_index"], s["document_row"], [0.05] * 4, True)
    assert abs(a.item() - next(c for c in cases if c["name"] == "ragged/use_batch")["loss"]) < 1e-15

    for c in cases:
        log(f"  {c['name']:<32} loss {c['loss']:.10f}"
            + (f"  masked qd {len(c['masked_qd'])}" if "masked_qd" in c else "")
            + (f" qq {len(c['masked_qq'])}" if "masked_qq" in c else ""))

    # Cross-check every ms-swift case against ms-swift's own code, if it was given.
    sources = {"ragged": sets["ragged"], "uniform": sets["uniform"], "padding": trunc}
    checked = []
    for path in ms_swift:
        loss_fn, where = load_ms_swift_loss(Path(path))
        worst = 0.0
        for c in cases:
            if c["kind"] != "ms-swift":
                continue
            s = sources[c["name"].split("/")[0]]
            worst = max(worst, ms_swift_check(loss_fn, c, s["queries"].to(torch.float64),
                                              s["documents"].to(torch.float64)))
        assert worst < 1e-12, f"{where}: max difference {worst}"
        log(f"  ms-swift cross-check {where}: {sum(c['kind'] == 'ms-swift' for c in cases)} cases, "
            f"max |diff| of loss and gradients {worst:.1e}")
        checked.append(where)
    if not ms_swift:
        log("  ms-swift cross-check skipped (pass --ms-swift PATH to the ms-swift wheel)")

    return {
        "description": "InfoNCE loss oracle: ms-swift InfonceLoss semantics, float64 autograd on the "
                       "float32 inputs. See Tests/Fixtures/reference/README.md (training/).",
        "ms_swift_source": "swift/loss/embedding.py InfonceLoss (ms-swift 4.x) == swift/plugin/loss.py "
                           "infonce_loss (ms-swift 3.x)",
        "cases": cases,
    }


# --------------------------------------------------------------------------------------
# 2. One InfoNCE step through PEFT LoRA (gradient oracle)
# --------------------------------------------------------------------------------------

# Three (query, positive, hard negative) triples: agriculture / fishery, English and Chinese.
TRIPLES = {
    "queries": [
        "How do I prevent rice blast?",
        "稻田养鱼有什么好处？",
        "best soil pH for soybeans",
    ],
    "positives": [
        "Rice blast is a fungal disease; don't over-fertilize with nitrogen.",
        "稻田养鱼是一种生态农业模式，鱼可以吃掉害虫和杂草。",
        "土壤酸碱度为6.5至7.0时最适合种植大豆和玉米。",
    ],
    "negatives": [
        "Tilapia, carp and catfish grow well in warm ponds.",
        "小麦赤霉病在抽穗扬花期遇到阴雨天气容易流行。",
        "Tea prefers acidic soil (pH 4.5-5.5).",
    ],
}

PEFT_MODELS = {
    # name: (base model dir, target modules, pooling, padding side)
    "peft-qwen3": (QWEN3_DIR, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                   "last_token", "left"),
    "peft-bert": (BERT_DIR, ["query", "key", "value", "dense"], "mean", "right"),
}
STEP_MAX_LENGTH = 32
STEP_TEMPERATURE = 0.05


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    if pooling == "last_token":
        assert bool(mask[:, -1].all()), "last-token pooling expects left padding"
        return hidden[:, -1]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def embed(model, batch, pooling: str) -> torch.Tensor:
    """AutoModel forward -> pooling -> L2 normalization (no KV cache for the decoder)."""
    out = model(**batch, use_cache=False) if pooling == "last_token" else model(**batch)
    return F.normalize(pool(out.last_hidden_state, batch["attention_mask"], pooling), p=2, dim=1)


def base_model_path_string(model_dir: Path) -> str:
    """Recorded in adapter_config.json as base_model_name_or_path: repo-relative, so the
    file does not depend on where the repository is checked out."""
    return model_dir.relative_to(REPO).as_posix()


def lora_model(model_dir: Path, config: LoraConfig, seed: int, bound: float):
    """AutoModel (fp32, eval) + PEFT LoRA whose A *and* B matrices are set to
    U(-bound, bound) (torch.manual_seed(seed), then every lora_A / lora_B weight in
    named_parameters() order), so that gradients reach both and the adapter changes the
    output. PEFT's own init (kaiming A, zero B) is overwritten."""
    base = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
    model = get_peft_model(base, config)
    model.peft_config["default"].base_model_name_or_path = base_model_path_string(model_dir)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.uniform_(-bound, bound)
    model.eval()  # no dropout anywhere (lora_dropout is 0 as well)
    return model


def save_adapter(model, out: Path) -> list[str]:
    """model.save_pretrained(out): PEFT's adapter_config.json + adapter_model.safetensors.
    Two normalizations for reproducible bytes: PEFT stores target_modules from a Python
    set (its order depends on the string hash seed), so the list is re-written sorted,
    with PEFT's own JSON layout (indent 2, sorted keys); and the README.md model-card stub
    PEFT writes is removed. Returns the tensor keys of adapter_model.safetensors."""
    model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")
    assert sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors"], os.listdir(out)
    return sorted(load_file(str(out / "adapter_model.safetensors")).keys())


def saved_key(param_name: str) -> str:
    """named_parameters() name -> PEFT's saved key: the adapter name ("default") is dropped."""
    assert ".default." in param_name, param_name
    return param_name.replace(".default.", ".")


def step_loss(emb: torch.Tensor, n: int, temperature: float) -> torch.Tensor:
    """emb rows in ms-swift order [q0, p0, n0, q1, p1, n1, ...]: InfoNCE with use_batch,
    candidates = the 2n documents, target = the row's own positive (= MNRL, scale 20)."""
    q = emb[0::3]
    docs = torch.stack([emb[3 * i + 1 + k] for i in range(n) for k in range(2)])
    return infonce_loss(q, docs, [2 * i for i in range(n)], [i for i in range(n) for _ in range(2)],
                        [temperature] * n, use_batch=True)


def build_peft_step(name: str) -> None:
    model_dir, targets, pooling, padding_side = PEFT_MODELS[name]
    out = OUT / name
    fresh_dir(out)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, bias="none",
                        use_rslora=False)
    model = lora_model(model_dir, config, seed=123, bound=0.1)
    keys = save_adapter(model, out)
    write_json(out / "batch.json", TRIPLES)

    tok = AutoTokenizer.from_pretrained(str(model_dir), padding_side=padding_side)
    n = len(TRIPLES["queries"])
    texts = [t for i in range(n) for t in (TRIPLES["queries"][i], TRIPLES["positives"][i], TRIPLES["negatives"][i])]
    batch = tok(texts, padding=True, truncation=True, max_length=STEP_MAX_LENGTH, return_tensors="pt")
    unpadded = [[t for t, m in zip(ids, mask) if m] for ids, mask in
                zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())]
    full = [len(tok(t)["input_ids"]) for t in texts]
    assert all(len(u) == f for u, f in zip(unpadded, full)), "no text should be truncated"
    if "token_type_ids" in batch:
        assert int(batch["token_type_ids"].abs().sum()) == 0

    model.zero_grad()
    emb = embed(model, batch, pooling)
    loss = step_loss(emb, n, STEP_TEMPERATURE)
    loss.backward()

    # sentence-transformers' MNRL (scale 20) on the same embeddings gives the same loss.
    cols = [emb[0::3], emb[1::3], emb[2::3]]

    class Fixed(torch.nn.Module):
        def forward(self, features):
            return {"sentence_embedding": cols[features["column"]]}

    mnrl = MultipleNegativesRankingLoss(Fixed(), scale=20.0)([{"column": c} for c in range(3)], None)
    assert abs(mnrl.item() - loss.item()) < 1e-5, (mnrl.item(), loss.item())

    grads, zero = {}, []
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        k = saved_key(pname)
        if p.grad is None:  # not on the loss path (BERT's pooler): PEFT's gradient is "none", i.e. 0
            grads[k] = torch.zeros_like(p)
            zero.append(k)
        else:
            assert p.grad.abs().max() > 0, k
            grads[k] = p.grad.detach().clone().contiguous()
    assert sorted(grads) == keys, "gradient keys must equal the adapter's keys"
    save_file(grads, str(out / "grads.safetensors"))

    # The same step in float64 (a deep copy of the PEFT model), to size the float32 error.
    m64 = copy.deepcopy(model).double()
    m64.zero_grad()
    loss64 = step_loss(embed(m64, batch, pooling), n, STEP_TEMPERATURE)
    loss64.backward()
    rel = 0.0
    for pname, p in m64.named_parameters():
        if p.requires_grad and p.grad is not None:
            g32 = grads[saved_key(pname)].double()
            rel = max(rel, ((g32 - p.grad).abs().max() / p.grad.abs().max()).item())
    assert rel < 1e-3, rel

    # Split forward passes (queries, positives, negatives as separate batches) agree.
    with torch.no_grad():
        split = []
        for i in range(3):
            part = tok(texts[i::3], padding=True, truncation=True, max_length=STEP_MAX_LENGTH, return_tensors="pt")
            split.append(embed(model, part, pooling))
        split_diff = max((split[i] - emb[i::3]).abs().max().item() for i in range(3))
    assert split_diff < 1e-5, split_diff

    grad_norms = {k: float(np.float32(v.norm().item())) for k, v in grads.items()}
    meta = {
        "model": model_dir.name,
        "base_model_dir": base_model_path_string(model_dir),
        "model_class": type(model.get_base_model()).__name__,
        "attn_implementation": model.get_base_model().config._attn_implementation,
        "lora": {"r": 4, "lora_alpha": 8, "scaling": 2.0, "lora_dropout": 0.0, "bias": "none",
                 "use_rslora": False, "target_modules": sorted(targets),
                 "init": "torch.manual_seed(123); every lora_A/lora_B weight (named_parameters order) "
                         "uniform_(-0.1, 0.1)"},
        "tokenization": {"max_length": STEP_MAX_LENGTH, "padding": True, "truncation": True,
                         "padding_side": padding_side},
        "pooling": pooling,
        "normalize": "l2",
        "loss": {"type": "infonce", "use_batch": True, "temperature": STEP_TEMPERATURE,
                 "candidates": "the 6 documents (3 positives + 3 negatives); target = own positive",
                 "reduction": "mean over the 3 queries"},
        "batch_order": "one forward pass over [q0, p0, n0, q1, p1, n1, q2, p2, n2] (ms-swift order)",
        "loss_value": loss.item(),
        "loss_value_float64": loss64.item(),
        "grads_max_rel_diff_vs_float64": rel,
        "split_batch_max_abs_diff": split_diff,
        "input_ids": unpadded,
        "padded_input_ids": batch["input_ids"].tolist(),
        "attention_mask": batch["attention_mask"].tolist(),
        "embeddings": {"queries": f32_rows(emb[0::3]), "positives": f32_rows(emb[1::3]),
                       "negatives": f32_rows(emb[2::3])},
        "adapter_keys": keys,
        "zero_grad_keys": zero,
        "grad_norms": grad_norms,
        "versions": versions(),
    }
    write_json_rows(out / "meta.json", meta)
    check_f32_json(out / "meta.json", lambda d: d["embeddings"]["queries"], emb[0::3])
    reloaded = load_file(str(out / "grads.safetensors"))
    assert all(torch.equal(reloaded[k], grads[k]) and reloaded[k].dtype == torch.float32 for k in keys)
    log(f"  {name}: {len(keys)} adapter tensors, loss {loss.item():.8f} (float64 {loss64.item():.8f}), "
        f"grads vs float64 max rel {rel:.1e}, split batches {split_diff:.1e}, MNRL {mnrl.item():.8f}"
        + (f", zero grads: {len(zero)} ({', '.join(zero)})" if zero else ""))
    log(f"    keys e.g. {keys[0]}")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def check_f32_json(path: Path, extract, expected: torch.Tensor) -> None:
    """Re-read a written file: the floats, parsed as doubles and rounded to float32, must
    be bit-identical to the computed float32 values."""
    got = np.asarray(extract(json.loads(path.read_text(encoding="utf-8"))), dtype=np.float64).astype(np.float32)
    want = expected.detach().to(torch.float32).numpy()
    assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)), path


# --------------------------------------------------------------------------------------
# 3. PEFT adapter round trip (an adapter "trained elsewhere")
# --------------------------------------------------------------------------------------

ROUNDTRIP_TEXTS = [
    "How do I prevent rice blast?",
    "水稻是中国最重要的粮食作物之一，主要分布在长江流域和南方地区。",
    "Tilapia, carp and catfish grow well in warm ponds. Shrimp need clean water with dissolved oxygen above 5 mg/L.",
    "智慧农业利用无人机、传感器和大数据，实现精准施肥和精准灌溉。",
    "I ❤️ farming 🚜 and fishing 🎣!",
]
ROUNDTRIP_MAX_LENGTH = 64


def build_peft_roundtrip() -> None:
    out = OUT / "peft-roundtrip"
    fresh_dir(out)
    config = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], bias="none",
                        use_rslora=False)
    trained = lora_model(QWEN3_DIR, config, seed=7, bound=0.2)
    keys = save_adapter(trained, out)

    # The reference: a fresh base model + PeftModel.from_pretrained(adapter dir), as a user would load it.
    tok = AutoTokenizer.from_pretrained(str(QWEN3_DIR), padding_side="left")
    batch = tok(ROUNDTRIP_TEXTS, padding=True, truncation=True, max_length=ROUNDTRIP_MAX_LENGTH, return_tensors="pt")
    base = AutoModel.from_pretrained(str(QWEN3_DIR), dtype=torch.float32).eval()
    with torch.no_grad():
        base_emb = embed(base, batch, "last_token")
    loaded = PeftModel.from_pretrained(AutoModel.from_pretrained(str(QWEN3_DIR), dtype=torch.float32),
                                       str(out)).eval()
    with torch.no_grad():
        emb = embed(loaded, batch, "last_token")
        direct = embed(trained, batch, "last_token")
        merged = embed(loaded.merge_and_unload(), batch, "last_token")
    assert torch.equal(emb, direct), "the saved adapter must reproduce the in-memory one"
    merged_diff = (merged - emb).abs().max().item()
    assert merged_diff < 1e-5, merged_diff
    change = (emb - base_emb).abs().max().item()
    assert change > 0.05, f"the adapter barely changes the embeddings ({change})"
    unpadded = [[t for t, m in zip(ids, mask) if m] for ids, mask in
                zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())]
    assert all(len(u) == len(tok(t)["input_ids"]) for u, t in zip(unpadded, ROUNDTRIP_TEXTS)), "no truncation"
    expected = {
        "texts": ROUNDTRIP_TEXTS,
        "embeddings": f32_rows(emb),
        "base_model_dir": base_model_path_string(QWEN3_DIR),
        "reference": "PeftModel.from_pretrained(AutoModel(tiny-qwen3, fp32), this dir), eval; "
                     "one left-padded batch; last-token pooling; L2 normalize",
        "lora": {"r": 2, "lora_alpha": 4, "scaling": 2.0, "target_modules": ["q_proj", "v_proj"],
                 "init": "torch.manual_seed(7); every lora_A/lora_B weight (named_parameters order) "
                         "uniform_(-0.2, 0.2)"},
        "max_length": ROUNDTRIP_MAX_LENGTH,
        "padding_side": "left",
        "pooling": "last_token",
        "normalize": "l2",
        "input_ids": unpadded,
        "attention_mask": batch["attention_mask"].tolist(),
        "base_embeddings": f32_rows(base_emb),
        "merged_max_abs_diff": merged_diff,
        "adapter_keys": keys,
        "versions": versions(),
    }
    write_json_rows(out / "expected.json", expected)
    check_f32_json(out / "expected.json", lambda d: d["embeddings"], emb)
    log(f"  peft-roundtrip: {len(keys)} adapter tensors, max |adapter - base| {change:.3f}, "
        f"merge_and_unload vs PeftModel {merged_diff:.1e}, token counts {[len(u) for u in unpadded]}")


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ms-swift", action="append", default=[], metavar="PATH",
                        help="ms-swift wheel or unpacked tree to cross-check the loss against (repeatable)")
    args = parser.parse_args()

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # deterministic CPU reductions
    log("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    OUT.mkdir(parents=True, exist_ok=True)

    log("1. infonce_cases.json")
    cases = build_infonce_cases(args.ms_swift)
    write_json_rows(OUT / "infonce_cases.json", cases)
    reread = json.loads((OUT / "infonce_cases.json").read_text(encoding="utf-8"))
    for c, r in zip(cases["cases"], reread["cases"]):
        assert r["loss"] == c["loss"] and r["d_queries"] == [list(x) for x in c["d_queries"]], c["name"]
        q = np.asarray(r["queries"], dtype=np.float64).astype(np.float32)
        assert np.array_equal(q, np.asarray(c["queries"], dtype=np.float32)), c["name"]

    log("2. peft-qwen3, peft-bert (one InfoNCE step through LoRA)")
    for name in PEFT_MODELS:
        build_peft_step(name)

    log("3. peft-roundtrip")
    build_peft_roundtrip()

    log("done. fixture digests:")
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            h = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            total += p.stat().st_size
            log(f"  {h}  {p.stat().st_size:>9}  {p.relative_to(FIXTURES)}")
    log(f"  total {total} bytes")
    assert total < SIZE_BUDGET, f"training fixtures should stay under {SIZE_BUDGET} bytes"
    return 0


if __name__ == "__main__":
    sys.exit(main())
