#!/usr/bin/env python3
"""Build the Python-oracle fixture for `embedtune mine` (hard-negative mining).

Dev-time tool only (like make_fixtures.py): Python is never a runtime dependency of
EmbedTune. This script writes one small, committed file that the Swift tests compare
against:

  Tests/Fixtures/mining/mining_cases.json

It runs sentence-transformers' `util.mine_hard_negatives` (file
sentence_transformers/util/hard_negatives.py) with EXACT search (use_faiss=False),
sampling_strategy="top" and no cross-encoder, on PRECOMPUTED embeddings: the "model" is a
lookup object whose encode_query / encode_document map a text ("q3", "a7", "d4") to a fixed
unit-norm float32 vector (D = 16), and whose similarity / similarity_pairwise are
util.cos_sim / util.pairwise_cos_sim (what a SentenceTransformer with the default
similarity_fn_name "cosine" uses). No model is loaded, nothing is downloaded.

The data (30 (anchor, positive) rows) is built so that every branch of the function is
visible in the output:
  * rows 3 and 17 share the anchor "q3" (one query, two positives a3 / a17, with clearly
    different scores, so "the margin uses the *minimum* positive score" is observable);
  * rows 9 and 22 share the positive "a9" (corpus de-duplication);
  * documents placed 1e-4 / 2e-4 above and below a query's positive score and every
    threshold (absolute / relative margin, max_score, min_score);
  * q4's positive has a NEGATIVE score (-0.30): relative margin uses |positive|;
  * q27's positive scores -0.90: with a margin it gets no negative at all;
  * q6 points away from everything: with min_score=0.1 it keeps only 2 candidates.
All scores of a query are > 1e-5 apart and, apart from those deliberate 1e-4 / 2e-4
offsets, > 2e-5 away from every threshold any case uses (the seed is advanced until this
holds), so a float32 re-implementation makes identical decisions.

Checks (non-zero exit otherwise): an independent float64 re-implementation of the
semantics written to the JSON "semantics" block reproduces every case's output (texts and
labels exactly, scores to 2e-6); each of eight plausible mis-readings of the function
(VARIANTS: relative margin as p * (1 - m), margin from the highest positive, non-strict
margin, no candidate window, window without max_positives, range_min on raw ranks,
labeled-pair negatives per positive, n-tuple keeping short rows) changes the output of at
least one case; each case gives the same output with faiss_batch_size=5 (chunked similarity); the JSON re-parses to identical values and every vector component
re-parses to the identical float32; the file stays under 400 KB.

Usage (from the repository root, ~5 s; needs `datasets` in the venv):
    tools/reference/.venv/bin/pip install datasets
    tools/reference/.venv/bin/python tools/reference/make_mining_fixtures.py
"""
import contextlib
import hashlib
import io
import json
import logging
import math
import zlib
import os
import platform
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

import datasets
import sentence_transformers
from datasets import Dataset
from sentence_transformers.util import cos_sim, mine_hard_negatives, pairwise_cos_sim

torch.set_num_threads(1)
datasets.disable_progress_bars()

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "mining" / "mining_cases.json"
DIM = 16
N_ROWS = 30
SCORE_GAP = 1e-5        # min distance between two scores of one query
THRESHOLD_GAP = 2e-5    # min distance between a score and any threshold a case uses (except deliberate)
SCORE_TOL = 2e-6        # ST (float32) vs float64 re-implementation
SIZE_LIMIT = 400_000
SEED = 20240
ANCHOR_COL, POSITIVE_COL = "anchor", "positive"


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


# --------------------------------------------------------------------------- stand-in model


class LookupModel:
    """Stands in for a SentenceTransformer: text -> fixed float32 vector.

    mine_hard_negatives uses: model.device, model.encode_document(corpus, ...),
    model.encode_query(queries, ...) (both with normalize_embeddings=True,
    convert_to_numpy=True, pool=None, prompt_name=None, prompt=None), model.similarity
    (query chunk x corpus) and model.similarity_pairwise (query, positive pairs).
    model_card_data is only read with cache_folder (not used here)."""

    device = torch.device("cpu")
    similarity = staticmethod(cos_sim)
    similarity_pairwise = staticmethod(pairwise_cos_sim)

    def __init__(self, table):
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.calls = []

    def _encode(self, kind, sentences, normalize_embeddings=False, convert_to_numpy=True,
                prompt_name=None, prompt=None, pool=None, **kwargs):
        assert convert_to_numpy and prompt_name is None and prompt is None and pool is None
        self.calls.append((kind, list(sentences), dict(normalize_embeddings=normalize_embeddings)))
        emb = torch.from_numpy(np.stack([self.table[s] for s in sentences]))
        if normalize_embeddings:  # what SentenceTransformer.encode does
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb.numpy()

    def encode_query(self, sentences, **kwargs):
        return self._encode("query", sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        return self._encode("document", sentences, **kwargs)


# --------------------------------------------------------------------------- data


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def place(base, q, t):
    """Unit vector with cos(q, result) = t exactly (float64); otherwise points like `base`."""
    q = unit(q)
    w = unit(base - (base @ q) * q)
    return t * q + math.sqrt(1.0 - t * t) * w


def f32(v):
    """float32-rounded vector as Python floats whose repr is the shortest float32 string."""
    return [float(str(np.float32(x))) for x in np.asarray(v, dtype=np.float32)]


def dataset_rows():
    anchors = [f"q{i}" for i in range(N_ROWS)]
    positives = [f"a{i}" for i in range(N_ROWS)]
    anchors[17] = "q3"      # q3 has two positives: a3 (row 3) and a17 (row 17)
    positives[22] = "a9"    # a9 is the positive of q9 (row 9) and of q22 (row 22)
    return anchors, positives


EXTRA_CORPUS = [f"d{i}" for i in range(10)] + ["a7"] + [f"d{i}" for i in range(10, 15)] + ["d4"] + \
    [f"d{i}" for i in range(15, 20)]  # 20 new documents + one existing positive + one repeat


def build_vectors(seed, bumps):
    """Vectors for every text. Each text draws its own noise from (seed, crc32(text), bumps[text]);
    bumping a text re-draws only that text (used to repair near-ties, see main())."""
    def noise(text, free_dims=DIM - 2):
        n = np.random.default_rng([seed, zlib.crc32(text.encode()), bumps.get(text, 0)]).standard_normal(DIM)
        n[free_dims:] = 0.0  # ordinary texts leave the last two dimensions alone
        return n

    g = np.zeros(DIM)
    g[0] = 1.0  # a shared direction: ordinary texts score ~0.3 against each other
    e_iso, e_anti = np.eye(DIM)[DIM - 2], np.eye(DIM)[DIM - 1]

    def ordinary(t):
        return unit(0.6 * g + noise(t) / 4)

    anchors, positives = dataset_rows()
    V = {}
    for q in dict.fromkeys(anchors):
        V[q] = ordinary(q)
    V["q22"] = unit(V["q9"] + 0.5 * noise("q22") / 4)                 # a9 fits q22 too
    V["q6"] = unit(e_iso - 0.3 * g + 0.1 * noise("q6") / 4)          # scores ~ -0.15 with ordinary texts
    V["q27"] = unit(e_anti + 0.1 * noise("q27") / 4)                 # its positive a27 ~ -e_anti
    for q, a in zip(anchors, positives):
        if a not in V:
            V[a] = unit(V[q] + 0.45 * noise(a, DIM) / 4)               # positive ~0.9
    V["a17"] = place(V["a17"], V["q3"], 0.62)      # second, weaker positive of q3
    V["a4"] = place(V["a4"], V["q4"], -0.30)       # negative positive score
    V["a27"] = place(V["a27"], V["q27"], -0.90)    # hopeless query under any margin
    for d in dict.fromkeys(EXTRA_CORPUS):
        if d not in V:
            V[d] = ordinary(d)

    def cos(a, b):
        return float(unit(V[a]) @ unit(V[b]))

    p1, p2, p4, pm3 = cos("q1", "a1"), cos("q2", "a2"), cos("q4", "a4"), cos("q3", "a17")
    targets = [
        ("a10", "q1", p1 + 1e-4),                  # just above the positive
        ("a11", "q1", p1 - 1e-4),                  # just below the positive
        ("a12", "q1", p1 - 0.05 + 2e-4),           # absolute_margin 0.05: removed
        ("a13", "q1", p1 - 0.05 - 2e-4),           # absolute_margin 0.05: kept
        ("a14", "q2", p2 - 0.05 * abs(p2) + 2e-4),  # relative_margin 0.05: removed
        ("a15", "q2", p2 - 0.05 * abs(p2) - 2e-4),  # relative_margin 0.05: kept
        ("a19", "q3", 0.70),                       # between q3's two positives
        ("a20", "q3", pm3 - 0.05 - 2e-4),          # absolute margin vs the MIN positive: kept
        ("a21", "q3", pm3 - 0.05 + 2e-4),          # ... removed
        ("a16", "q4", p4 - 0.05 * abs(p4) + 2e-4),  # relative margin, negative positive: removed
        ("a18", "q4", p4 - 0.05 * abs(p4) - 2e-4),  # ... kept
        ("a23", "q5", 0.8 + 2e-4),                 # max_score 0.8: removed
        ("a24", "q5", 0.8 - 2e-4),                 # max_score 0.8: kept
        ("a25", "q6", 0.1 - 2e-4),                 # min_score 0.1: removed
        ("a26", "q6", 0.1 + 2e-4),                 # min_score 0.1: kept
        ("a28", "q6", 0.35),
    ]
    for d, q, t in targets:
        V[d] = place(V[d], V[q], t)
    deliberate = {(q, d) for d, q, _ in targets}
    return {k: f32(v) for k, v in V.items()}, deliberate


# --------------------------------------------------------------------------- float64 re-implementation


def resolve_args(anchors, args):
    """The effective parameters (mirrors the argument handling at the top of mine_hard_negatives)."""
    a = dict(range_min=0, range_max=None, max_score=None, min_score=None, absolute_margin=None,
             relative_margin=None, num_negatives=3, include_positives=False, output_format="triplet",
             output_scores=False)
    a.update({k: v for k, v in args.items() if k in a})
    if a["include_positives"]:
        a["output_format"] = "n-tuple"
    counts = {}
    for q in anchors:  # pandas groupby(anchor).count(): raw rows, duplicates included
        counts[q] = counts.get(q, 0) + 1
    max_positives = max(counts.values())
    if a["range_max"] is None:
        filtered = a["absolute_margin"] is not None or a["relative_margin"] is not None or a["max_score"] is not None
        a["range_max"] = a["range_min"] + a["num_negatives"] * (10 if filtered else 1) + max_positives
        a["range_max_derived"] = True
    else:
        a["range_max_derived"] = False
    a["max_positives"] = max_positives
    a["positives_per_query_mean"] = float(np.mean(list(counts.values())))
    return a


VARIANTS = {
    # plausible mis-readings of the function; main() asserts each one changes some case's output
    "relative_margin_as_(1-m)*p": "relative threshold p * (1 - m) instead of p - |p| * m",
    "margin_vs_max_positive": "margins measured from the highest instead of the lowest positive score",
    "absolute_margin_non_strict": "absolute margin removes score + m >= p (and 1e-4 below it)",
    "no_candidate_window": "filters applied to the whole corpus instead of the top range_max + max_positives",
    "window_without_max_positives": "candidate window of range_max instead of range_max + max_positives",
    "range_min_counts_raw_ranks": "range_min skips raw ranks (positives and filtered documents included)",
    "labeled_pair_negatives_per_positive": "labeled-pair repeats the negatives after every positive",
    "n_tuple_keeps_short_rows": "n-tuple keeps rows with fewer negatives",
}


def mine_ref(anchors, positives, extra, V, args, variant=None):
    assert variant is None or variant in VARIANTS
    a = resolve_args(anchors, args)
    nn, rmin, rmax, maxp = a["num_negatives"], a["range_min"], a["range_max"], a["max_positives"]
    corpus = list(dict.fromkeys((list(extra) if extra is not None else list(positives)) + list(positives)))
    queries = list(dict.fromkeys(anchors))
    pos_of = {q: [] for q in queries}
    for q, p in zip(anchors, positives):
        if p not in pos_of[q]:
            pos_of[q].append(p)
    C = np.stack([unit(V[d]) for d in corpus])
    per_query = {}
    for q in queries:
        s = C @ unit(V[q])
        ranked = sorted(range(len(corpus)), key=lambda i: -s[i])
        window = {"no_candidate_window": len(corpus), "window_without_max_positives": rmax}.get(variant, rmax + maxp)
        order = ranked[:window]  # candidate window
        pscores = [float(s[corpus.index(p)]) for p in pos_of[q]]
        pmin = max(pscores) if variant == "margin_vs_max_positive" else min(pscores)
        rel_thr = None if a["relative_margin"] is None else (
            pmin * (1 - a["relative_margin"]) if variant == "relative_margin_as_(1-m)*p"
            else pmin - abs(pmin) * a["relative_margin"])
        survivors = []
        for rank, i in enumerate(order):
            x = s[i]
            if variant == "range_min_counts_raw_ranks" and rank < rmin:
                continue
            if not a["include_positives"] and corpus[i] in pos_of[q]:
                continue
            if a["absolute_margin"] is not None and (
                    x + a["absolute_margin"] >= pmin - 1.5e-4 if variant == "absolute_margin_non_strict"
                    else x + a["absolute_margin"] > pmin):
                continue
            if rel_thr is not None and x > rel_thr:
                continue
            if a["max_score"] is not None and x > a["max_score"]:
                continue
            if a["min_score"] is not None and x < a["min_score"]:
                continue
            survivors.append((corpus[i], float(x)))
        if variant == "range_min_counts_raw_ranks":
            negs = survivors[:nn]
        else:
            negs = survivors[:rmax][rmin: rmin + nn]
        per_query[q] = {"positives": list(zip(pos_of[q], pscores)), "negatives": negs}

    fmt, sc = a["output_format"], a["output_scores"]
    rows = []
    for q in queries:
        pq = per_query[q]
        negs = pq["negatives"]
        if fmt == "triplet":
            for p, ps in pq["positives"]:
                for n, ns in negs:
                    r = {ANCHOR_COL: q, POSITIVE_COL: p, "negative": n}
                    if sc:
                        r["scores"] = [ps, ns]
                    rows.append(r)
        elif fmt == "n-tuple":
            for p, ps in pq["positives"]:
                if len(negs) < nn and variant != "n_tuple_keeps_short_rows":
                    continue
                r = {ANCHOR_COL: q, POSITIVE_COL: p}
                for j, (n, _) in enumerate(negs, start=1):
                    r[f"negative_{j}"] = n
                if sc:
                    r["scores"] = [ps] + [ns for _, ns in negs]
                rows.append(r)
        elif fmt == "labeled-pair":
            for p, ps in pq["positives"]:
                rows.append({ANCHOR_COL: q, POSITIVE_COL: p, **({"score": ps} if sc else {"label": 1})})
                if variant == "labeled_pair_negatives_per_positive":
                    for n, ns in negs:
                        rows.append({ANCHOR_COL: q, POSITIVE_COL: n, **({"score": ns} if sc else {"label": 0})})
            for n, ns in (negs if variant != "labeled_pair_negatives_per_positive" else []):
                rows.append({ANCHOR_COL: q, POSITIVE_COL: n, **({"score": ns} if sc else {"label": 0})})
        elif fmt == "labeled-list":
            for p, ps in pq["positives"]:
                if not negs:
                    continue
                r = {ANCHOR_COL: q, POSITIVE_COL: [p] + [n for n, _ in negs]}
                if sc:
                    r["scores"] = [ps] + [ns for _, ns in negs]
                else:
                    r["labels"] = [1] + [0] * len(negs)
                rows.append(r)
    derived = {
        "output_format": fmt,
        "range_max": rmax,
        "range_max_derived": a["range_max_derived"],
        "max_positives": maxp,
        "candidate_window": rmax + maxp,
        "candidate_window_effective": min(rmax + maxp, len(corpus)),
        "n_rows": len(anchors),
        "n_queries": len(queries),
        "n_query_positive_pairs": sum(len(v) for v in pos_of.values()),
        "corpus_size": len(corpus),
    }
    return rows, derived, per_query, queries, corpus


def same_rows(st_rows, ref_rows):
    if len(st_rows) != len(ref_rows):
        return f"{len(st_rows)} rows vs {len(ref_rows)}"
    for i, (x, y) in enumerate(zip(st_rows, ref_rows)):
        if list(x) != list(y):
            return f"row {i}: columns {list(x)} vs {list(y)}"
        for k in x:
            u, v = x[k], y[k]
            if isinstance(u, float) or (isinstance(u, list) and u and isinstance(u[0], float)):
                uu, vv = np.atleast_1d(u), np.atleast_1d(v)
                if uu.shape != vv.shape or np.max(np.abs(uu - vv)) > SCORE_TOL:
                    return f"row {i} {k}: {u} vs {v}"
            elif u != v:
                return f"row {i} {k}: {u!r} vs {v!r}"
    return None


# --------------------------------------------------------------------------- oracle run


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def run_st(anchors, positives, extra, V, args, **overrides):
    ds = Dataset.from_dict({ANCHOR_COL: list(anchors), POSITIVE_COL: list(positives)})
    model = LookupModel(V)
    call = dict(args)
    if extra is not None:
        call["corpus"] = list(extra)
    call.update(overrides)
    handler = _Capture()
    st_logger = logging.getLogger("sentence_transformers.util.hard_negatives")
    st_logger.addHandler(handler)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = mine_hard_negatives(ds, model, **call)
    finally:
        st_logger.removeHandler(handler)
    rows = result.to_list()
    return rows, list(result.column_names), out.getvalue().splitlines(), handler.messages, model.calls


# --------------------------------------------------------------------------- cases


BASE_ARGS = {"sampling_strategy": "top", "use_faiss": False, "verbose": True}
REL = {"relative_margin": 0.05}
CASES = [
    ("defaults", {}, "no filters, num_negatives=3 (default): range_max = 0 + 3 + max_positives."),
    ("range_min_max", {"num_negatives": 5, "range_min": 2, "range_max": 12},
     "explicit range_max; range_min=2 skips the 2 best surviving candidates."),
    ("absolute_margin", {"absolute_margin": 0.05},
     "drop candidates with score + 0.05 > min positive score of the query."),
    ("relative_margin", dict(REL),
     "drop candidates with score > p - |p| * 0.05 (p = min positive score); triplet output."),
    ("max_min_score", {"max_score": 0.8, "min_score": 0.1},
     "drop candidates with score > 0.8 or score < 0.1."),
    ("include_positives", {"include_positives": True},
     "positives stay candidates; output_format is forced to n-tuple (a warning is logged)."),
    ("relative_margin_triplet_scores", {**REL, "output_format": "triplet", "output_scores": True},
     "relative_margin case, triplet with a scores column [positive, negative]."),
    ("relative_margin_n_tuple", {**REL, "output_format": "n-tuple"},
     "relative_margin case, n-tuple: rows without num_negatives negatives are dropped."),
    ("relative_margin_n_tuple_scores", {**REL, "output_format": "n-tuple", "output_scores": True},
     "relative_margin case, n-tuple with scores [positive, negative_1, ..., negative_n]."),
    ("relative_margin_labeled_pair", {**REL, "output_format": "labeled-pair"},
     "relative_margin case, labeled-pair (label 1 / 0)."),
    ("relative_margin_labeled_pair_scores", {**REL, "output_format": "labeled-pair", "output_scores": True},
     "relative_margin case, labeled-pair with a score column instead of label."),
    ("relative_margin_labeled_list", {**REL, "output_format": "labeled-list"},
     "relative_margin case, labeled-list (labels [1, 0, ...])."),
    ("relative_margin_labeled_list_scores", {**REL, "output_format": "labeled-list", "output_scores": True},
     "relative_margin case, labeled-list with scores instead of labels."),
    ("extra_corpus", {"corpus": EXTRA_CORPUS},
     "defaults plus an extra corpus list (20 new documents, a repeat of d4 and the existing positive a7)."),
    ("window_margin", {"absolute_margin": 0.05, "range_max": 4},
     "(extra) explicit small range_max with a margin: the margin filters only the candidate window (top "
     "range_max + max_positives = 6 by score), so queries whose best candidates are removed run short."),
    ("absolute_margin_zero", {"absolute_margin": 0.0},
     "(extra) absolute_margin=0: a negative must not score above the positive (a10 is 1e-4 above p(q1): "
     "dropped; a11 is 1e-4 below: kept)."),
    ("duplicate_pair_row", {"dup_row": True},
     "(extra) the dataset gets a 31st row repeating (q3, a3): max_positives becomes 3 (raw row count), "
     "so the derived range_max is 6, but q3 still has 2 distinct positives and no row is duplicated."),
]


def case_data(spec):
    anchors, positives = dataset_rows()
    if spec.get("dup_row"):
        anchors, positives = anchors + ["q3"], positives + ["a3"]
    extra = spec.get("corpus")
    args = {**BASE_ARGS, **{k: v for k, v in spec.items() if k not in ("dup_row", "corpus")}}
    if extra is not None:
        args["corpus"] = list(extra)  # recorded as passed; run_st passes it from `extra`
    return anchors, positives, extra, args


def thresholds_for(q, pscores):
    pmin = min(pscores)
    return [pmin - 0.05, pmin - 0.05 * abs(pmin), pmin, 0.8, 0.1]


def check_data(V, deliberate):
    """Score separation (see module docstring). Returns (None, None) if fine, else (reason, text to re-draw)."""
    anchors, positives = dataset_rows()
    docs = list(dict.fromkeys(positives + EXTRA_CORPUS))
    C = np.stack([unit(V[d]) for d in docs])
    pos_of = {}
    for q, p in zip(anchors, positives):
        pos_of.setdefault(q, []).append(p)
    for q in pos_of:
        s = C @ unit(V[q])
        order = np.argsort(-s)
        for i, j in zip(order[:-1], order[1:]):
            if s[i] - s[j] <= SCORE_GAP:
                free = [docs[k] for k in (i, j) if (q, docs[k]) not in deliberate]
                return f"{q}: {docs[i]} / {docs[j]} scores {s[i]:.7f} / {s[j]:.7f}", max(free)
        pscores = [s[docs.index(p)] for p in pos_of[q]]
        for t in thresholds_for(q, pscores):
            for k, d in enumerate(docs):
                if d in pos_of[q]:
                    continue
                gap = abs(s[k] - t)
                if gap <= THRESHOLD_GAP and not ((q, d) in deliberate and gap > 0.9e-4):
                    return f"{q}: {d} score {s[k]:.7f} too close to threshold {t:.7f}", d
    return None, None


def structural_checks(results):
    """The deliberate situations really show up in the mined negatives."""
    def negs(case, q):
        return [n for n, _ in results[case]["per_query"][q]["negatives"]]

    want = [
        ("defaults", "q1", lambda n: n[:2] == ["a10", "a11"]),
        ("absolute_margin", "q1", lambda n: "a13" in n and "a12" not in n and "a10" not in n),
        ("absolute_margin", "q3", lambda n: n[:1] == ["a20"] and "a21" not in n and "a19" not in n),
        ("absolute_margin", "q27", lambda n: n == []),
        ("absolute_margin_zero", "q1", lambda n: n[:1] == ["a11"]),
        ("relative_margin", "q2", lambda n: "a15" in n and "a14" not in n),
        ("relative_margin", "q3", lambda n: "a19" not in n),
        ("relative_margin", "q4", lambda n: n[:1] == ["a18"] and "a16" not in n and len(n) < 3),
        ("relative_margin", "q27", lambda n: n == []),
        ("max_min_score", "q5", lambda n: n[:1] == ["a24"]),
        ("max_min_score", "q6", lambda n: n[0] == "a28" and n[-1] == "a26" and len(n) < 3),
        ("include_positives", "q1", lambda n: n[:3] == ["a10", "a1", "a11"]),
        ("extra_corpus", "q0", lambda n: any(x.startswith("d") for x in n)),
    ]
    for case, q, ok in want:
        n = negs(case, q)
        if not ok(n):
            return f"{case}/{q}: negatives {n}"
    return None


def case_notes(name, args, derived, per_query, queries, corpus, anchors, rows, extra):
    nn = args.get("num_negatives", 3)
    notes = []
    notes.append(f"queries deduplicated by text, first occurrence order: {len(anchors)} rows -> "
                 f"{derived['n_queries']} unique queries (q3 appears in rows 3 and 17"
                 + (" and 30" if len(anchors) > N_ROWS else "") + ").")
    if extra is None:
        notes.append(f"corpus = dict.fromkeys(positives): {derived['corpus_size']} documents "
                     "(a9 is the positive of both q9 and q22 and appears once).")
    else:
        notes.append(f"corpus = dict.fromkeys(corpus + positives): the {len(extra)} given entries first "
                     f"(d4 repeated once -> kept once, a7 keeps its position in the given list), then the "
                     f"positives not yet present: {derived['corpus_size']} documents.")
    margin = args.get("absolute_margin") is not None or args.get("relative_margin") is not None
    notes.append("q3 has two positives (a3, a17): it is embedded and searched once; "
                 + ("both positives stay candidates (include_positives)" if args.get("include_positives")
                    else "both positives are excluded from its candidates")
                 + ("; the margin uses the smaller positive score p(q3,a17) = 0.62 (a19 at 0.70 lies between "
                    "the two positives and is removed)" if margin else "")
                 + "; the same negatives serve each of its positives.")
    rm = derived["range_max"]
    notes.append(f"range_max = {rm} ({'derived' if derived['range_max_derived'] else 'given'}); "
                 f"max_positives = {derived['max_positives']}; candidate window = range_max + max_positives = "
                 f"{derived['candidate_window']}" + (
                     f", capped to the corpus size {derived['corpus_size']} (rest padded with -inf)"
                     if derived['candidate_window'] > derived['corpus_size'] else "") + ".")
    short = {q: len(v["negatives"]) for q, v in per_query.items() if len(v["negatives"]) < nn}
    fmt = derived["output_format"]
    if short:
        desc = ", ".join(f"{q} ({k})" for q, k in short.items())
        notes.append(f"queries with fewer than num_negatives={nn} negatives: {desc}.")
        if fmt == "triplet":
            notes.append("triplet: such a query simply yields fewer triplets (one per surviving negative and "
                         "positive); a query with 0 negatives yields no row at all.")
        elif fmt == "n-tuple":
            notes.append("n-tuple: every (query, positive) row of such a query is dropped (no padding).")
        elif fmt == "labeled-pair":
            notes.append("labeled-pair: the query's positive rows are always written; only its surviving "
                         "negatives follow (none for a query with 0 negatives).")
        elif fmt == "labeled-list":
            notes.append("labeled-list: a row keeps the surviving negatives (shorter list, no padding); a row "
                         "with 0 negatives is dropped.")
    else:
        notes.append(f"every query has {nn} negatives: nothing is dropped.")
    order = {
        "triplet": "rows grouped by unique query (first-occurrence order), then by its positives (first-occurrence "
                   "order), then negatives by descending score",
        "n-tuple": "one row per (unique query, positive), queries in first-occurrence order, positives in "
                   "first-occurrence order; negative_1..N by descending score",
        "labeled-pair": "per unique query (first-occurrence order): its positive rows (label/score of the positive) "
                        "in first-occurrence order, then its negatives once, by descending score",
        "labeled-list": "one row per (unique query, positive), queries and positives in first-occurrence order; "
                        "the list is [positive, negatives by descending score]",
    }[fmt]
    notes.append(f"{order}; {len(rows)} rows (the dataset's row order is not kept: q3's second positive, row 17, "
                 f"is emitted right after its first).")
    notes.append("ties: none (scores of a query > 1e-5 apart); see semantics.ties.")
    return notes


SEMANTICS = {
    "source": "sentence_transformers/util/hard_negatives.py, mine_hard_negatives(dataset, model, **args) with "
              "use_faiss=False, sampling_strategy='top', cross_encoder=None, verbose=True. Column 1 of the "
              "dataset is the anchor, column 2 the positive (here named 'anchor' / 'positive'; output keeps "
              "these names).",
    "embeddings": "corpus embedded with encode_document, unique queries with encode_query, both with "
                  "normalize_embeddings=True (x / max(||x||, 1e-12), float32). Scores are model.similarity = "
                  "util.cos_sim (normalises again, float32 torch.mm); positive scores use "
                  "model.similarity_pairwise = util.pairwise_cos_sim.",
    "dedup": "queries = dict.fromkeys(anchors) (first occurrence order). corpus = dict.fromkeys(positives) "
             "without a corpus argument, dict.fromkeys(corpus + positives) with one (given list first, then the "
             "positives not in it; duplicates inside the given list collapse too). Per unique query, its "
             "positives are the distinct positive texts of its rows in first-occurrence order. A query text "
             "that is also a corpus document is NOT excluded from its own candidates (not exercised here).",
    "max_positives": "max over anchors of pandas groupby(anchor).count(): the RAW number of rows per anchor, "
                     "duplicate (anchor, positive) rows included (case duplicate_pair_row: 3 although q3 has 2 "
                     "distinct positives).",
    "range_max_default": "if range_max is None: range_min + 10*num_negatives + max_positives when absolute_margin, "
                         "relative_margin or max_score is set (min_score alone does not count without a "
                         "cross-encoder); otherwise range_min + num_negatives + max_positives. Printed as "
                         "'Setting range_max to N based on the provided parameters.'",
    "validation": "num_negatives < 1 -> ValueError; range_min < 0 -> ValueError; range_min >= range_max -> "
                  "ValueError; num_negatives > range_max - range_min -> ValueError (all before embedding).",
    "candidate_window": "per unique query, the top k = min(range_max + max_positives, corpus size) documents by "
                        "score (torch.topk, descending); if the corpus is smaller the row is padded to "
                        "range_max + max_positives with index -1 / score -inf. Positives are part of this window.",
    "filters": "applied to the window in this order, each setting the score to -inf: (1) the query's positives "
               "(unless include_positives); (2) absolute_margin: score + absolute_margin > p_min; (3) "
               "relative_margin: score > p_min - |p_min| * relative_margin; (4) max_score: score > max_score; "
               "(5) min_score: score < min_score. p_min = the MINIMUM positive score of the query. All "
               "comparisons strict, float32. A score exactly at a threshold is kept.",
    "selection": "topk(k=range_max) of the filtered window (survivors first, in descending score, then -inf), "
                 "then drop the first range_min columns, then keep the first num_negatives columns ('top'). So "
                 "range_min and range_max count ranks among the SURVIVING candidates (positives and filtered "
                 "documents do not use up ranks), but only documents inside the candidate window can survive. "
                 "Negatives = survivors[range_min : range_min + num_negatives]; fewer if not enough survive "
                 "(the missing slots are -inf).",
    "output_triplet": "for each unique query, for each of its positives, for each finite negative in rank order: "
                      "{anchor, positive, negative} (+ scores: [positive_score, negative_score] with "
                      "output_scores). Missing negatives just produce fewer rows.",
    "output_n_tuple": "for each unique query, for each of its positives: {anchor, positive, negative_1 .. "
                      "negative_N} (+ scores: [positive_score, neg_1 .. neg_N]). A row with ANY missing negative "
                      "is dropped (no padding).",
    "output_labeled_pair": "for each unique query: first one row per positive {anchor, positive: <positive>, "
                           "label: 1}, then one row per finite negative {anchor, positive: <negative>, label: 0} "
                           "- negatives written ONCE per query, not per positive. With output_scores the label "
                           "column is replaced by 'score' (the positive / negative similarity). A query with no "
                           "negatives still writes its positive rows.",
    "output_labeled_list": "for each unique query, for each positive: {anchor, positive: [positive, neg_1, ..], "
                           "labels: [1, 0, ..]} with only the finite negatives (variable length, no padding); a "
                           "row with no negative at all is dropped. With output_scores 'labels' is replaced by "
                           "'scores' ([positive_score, neg scores..]).",
    "include_positives": "positives are not masked (they compete as candidates and can appear among the "
                         "negatives); output_format is forced to 'n-tuple' (logged warning if another format was "
                         "asked for). Margins / score limits / range_min are still applied if given (a warning "
                         "says they may discard the positives).",
    "scores": "output scores are float32 values (cos_sim / pairwise_cos_sim) returned as Python floats; compare "
              "with ~1e-6 tolerance.",
    "ties": "the fixture has no ties (all scores of a query > 1e-5 apart, none within 2e-5 of a threshold except "
            "the deliberate 1e-4 / 2e-4 offsets). torch.topk (CPU) does not order equal scores by index: observed "
            "topk([0.3, 0.5, 0.5, 0.1, 0.5], 4) -> indices [2, 4, 1, 0]; topk(8 x 0.5, 4) -> [6, 5, 4, 7]. So "
            "ST's order of equal scores is unspecified; a re-implementation may break ties any stable way "
            "(e.g. by corpus position). Entries that are -inf (filtered / padding) never reach the output, so "
            "their order does not matter.",
    "verbose_output": "stdout lines as printed: 'Setting range_max ...' (only when derived), 'Found N unique "
                      "queries out of M total queries.' (if duplicates), 'Found an average of X positives per "
                      "query.' (raw row counts, if max_positives > 1), 'Negative candidates mined, preparing "
                      "dataset...', a stats table (Count / Mean / Median / Std / Min / 25% / 50% / 75% / Max of "
                      "positive, negative and positive-negative scores, torch.quantile linear interpolation), "
                      "'Skipped N potential negatives (R%) due to the <param> of <value>.' and 'Could not find "
                      "enough negatives for N samples (R%). ...'.",
    "skip_counters": "absolute/relative margin and max_score count only finite entries they remove; min_score "
                     "counts every window entry < min_score INCLUDING entries already -inf (positives, earlier "
                     "filters, padding). Ratios divide by n_queries * (range_max + max_positives), reduced by the "
                     "margin skips only.",
    "missing_samples": "'Could not find enough negatives' compares len(output) with: triplet n_pairs * "
                       "num_negatives; n-tuple and labeled-list n_pairs; labeled-pair n_queries * num_negatives + "
                       "len(dataset) (raw rows). n_pairs = number of (unique query, distinct positive) pairs.",
}


def fmt_json(o, ind=0):
    s = json.dumps(o, ensure_ascii=True, separators=(", ", ": "))
    scalar_list = isinstance(o, list) and all(not isinstance(x, (dict, list)) for x in o)
    if not isinstance(o, (dict, list)) or scalar_list or len(s) + ind <= 240:
        return s
    pad = " " * (ind + 1)
    if isinstance(o, dict):
        body = ",\n".join(pad + json.dumps(k) + ": " + fmt_json(v, ind + 1) for k, v in o.items())
        return "{\n" + body + "\n" + " " * ind + "}"
    body = ",\n".join(pad + fmt_json(v, ind + 1) for v in o)
    return "[\n" + body + "\n" + " " * ind + "]"


def main():
    # Start from SEED; re-draw single texts that cause a near-tie or sit too close to a threshold
    # (deterministic: always the same text for the same violation). A structural miss moves on
    # to the next seed.
    for seed in range(SEED, SEED + 50):
        bumps = {}
        for _ in range(500):
            V, deliberate = build_vectors(seed, bumps)
            why, text = check_data(V, deliberate)
            if why is None:
                break
            bumps[text] = bumps.get(text, 0) + 1
        else:
            fail(f"seed {seed}: could not separate the scores")
        results = {}
        for name, spec, _ in CASES:
            anchors, positives, extra, args = case_data(spec)
            rows, derived, per_query, queries, corpus = mine_ref(anchors, positives, extra, V, args)
            results[name] = {"per_query": per_query}
        why = structural_checks(results)
        if why is None:
            break
        print(f"seed {seed} rejected: {why}")
    else:
        fail("no seed satisfies the data constraints")
    print(f"seed {seed}, re-drawn texts {bumps}")

    cases = []
    for name, spec, desc in CASES:
        anchors, positives, extra, args = case_data(spec)
        call_args = {k: v for k, v in args.items() if k != "corpus"}
        st_rows, columns, stdout, warnings, calls = run_st(anchors, positives, extra, V, call_args)
        ref_rows, derived, per_query, queries, corpus = mine_ref(anchors, positives, extra, V, args)
        diff = same_rows(st_rows, ref_rows)
        if diff:
            fail(f"{name}: float64 re-implementation disagrees with ST: {diff}")
        chunked, *_ = run_st(anchors, positives, extra, V, call_args, faiss_batch_size=5)
        diff = same_rows(chunked, st_rows)
        if diff:
            fail(f"{name}: faiss_batch_size=5 changes the output: {diff}")
        if [c[1] for c in calls] != [corpus, queries]:
            fail(f"{name}: unexpected encode calls {calls}")
        set_line = [l for l in stdout if l.startswith("Setting range_max to ")]
        if derived["range_max_derived"] != bool(set_line) or (
                set_line and set_line[0] != f"Setting range_max to {derived['range_max']} based on the provided parameters."):
            fail(f"{name}: range_max {derived['range_max']} vs printed {set_line}")
        texts = list(dict.fromkeys(anchors + positives + (list(extra) if extra else [])))
        case = {
            "name": name,
            "description": desc,
            "dim": DIM,
            "anchors": anchors,
            "positives": positives,
            "corpus": list(extra) if extra is not None else None,
            "vectors": {t: V[t] for t in texts},
            "args": args,
            "derived": derived,
            "unique_queries": queries,
            "dedup_corpus": corpus,
            "mined": {q: [n for n, _ in v["negatives"]] for q, v in per_query.items()},
            "output_columns": columns,
            "output": st_rows,
            "stdout": stdout,
            "warnings": warnings,
            "notes": case_notes(name, args, derived, per_query, queries, corpus, anchors, st_rows, extra),
        }
        cases.append(case)
        short = sum(1 for v in per_query.values() if len(v["negatives"]) < args.get("num_negatives", 3))
        print(f"{name:38s} range_max {derived['range_max']:3d}  rows {len(st_rows):4d}  "
              f"short queries {short}  warnings {len(warnings)}")

    for variant, what in VARIANTS.items():
        hit = [c["name"] for c in cases if same_rows(c["output"], mine_ref(
            c["anchors"], c["positives"], c["corpus"], V, c["args"], variant=variant)[0])]
        if not hit:
            fail(f"no case tells apart the variant {variant!r} ({what})")
        print(f"variant {variant:38s} caught by {len(hit):2d} cases, e.g. {hit[0]}")

    doc = {
        "description": "Oracle for `embedtune mine`: sentence-transformers util.mine_hard_negatives (exact search, "
                       "sampling_strategy='top', cosine) on fixed float32 embeddings (D = 16) looked up by text. "
                       "Generated by tools/reference/make_mining_fixtures.py.",
        "versions": {
            "sentence-transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "datasets": datasets.__version__,
            "python": platform.python_version(),
        },
        "seed": seed,
        "redrawn": dict(sorted(bumps.items())),
        "semantics": SEMANTICS,
        "fields": {
            "anchors / positives": "the dataset rows in order (columns 'anchor', 'positive').",
            "corpus": "the extra corpus list passed as corpus= (null: none).",
            "vectors": "text -> float32 vector (shortest float32 decimal strings; unit norm up to float32 "
                       "rounding). The same text has the same vector as query and as document.",
            "args": "exactly the keyword arguments of the call (besides dataset and model).",
            "derived": "effective output_format, range_max (and whether it was derived), max_positives, candidate "
                       "window, sizes.",
            "unique_queries / dedup_corpus": "the de-duplicated lists in ST's order (corpus index = position).",
            "mined": "per unique query: the selected negatives in rank order (before formatting; fewer than "
                     "num_negatives where not enough survive), from the float64 re-implementation that reproduces "
                     "'output'.",
            "output_columns / output": "the returned datasets.Dataset: column names and rows (to_list()), "
                                       "scores as returned (float32 values as Python floats).",
            "stdout / warnings": "what the call printed (verbose=True) and logged at WARNING level.",
        },
        "cases": cases,
    }
    text = fmt_json(doc) + "\n"
    if json.loads(text) != json.loads(json.dumps(doc)):
        fail("JSON does not re-parse to the same values")
    for c in json.loads(text)["cases"]:
        for t, v in c["vectors"].items():
            if [float(str(np.float32(x))) for x in v] != v or len(v) != DIM:
                fail(f"vector {t} is not shortest-float32")
            if abs(np.linalg.norm(np.asarray(v, dtype=np.float64)) - 1) > 1e-6:
                fail(f"vector {t} is not unit norm")
    data = text.encode()
    if len(data) > SIZE_LIMIT:
        fail(f"fixture too large: {len(data)} bytes")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(data)
    print(f"{OUT.relative_to(ROOT)}  {len(data)} bytes  sha256 {hashlib.sha256(data).hexdigest()[:16]}")


if __name__ == "__main__":
    main()
