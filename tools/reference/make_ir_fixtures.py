#!/usr/bin/env python3
"""Build the Python-oracle fixture for EmbedTune's information-retrieval evaluator.

Dev-time tool only (like make_fixtures.py): Python is never a runtime dependency of
EmbedTune. This script writes one small, committed file that the Swift tests compare
against:

  Tests/Fixtures/ir/ir_cases.json   queries / corpus as fixed float32 vectors (D = 8),
                                    relevance judgements, and the metrics dict returned by
                                    sentence-transformers' InformationRetrievalEvaluator
                                    (score functions cosine = util.cos_sim, dot = util.dot_score),
                                    plus ST's own ranking of every evaluated query.

The evaluator is fed PRECOMPUTED embeddings: the "model" is a tiny lookup object whose
encode_query / encode_document map the text (= the id, e.g. "q0", "d3") to its vector.
That is all the evaluator uses of a model (plus model_card_data, stubbed here).

Vectors are multiples of 1/32 with |numerator| <= 127, so every dot product of two of
them is exact in float32 (and float64): dot scores, and their ties, do not depend on the
summation order. Cosine ties come only from identical vectors or from a vector scaled by
2 (also exact under any normalisation formula). Every other pair of cosine scores of a
query is kept > 1e-5 apart (the seed is advanced until that holds), so a float32
re-implementation ranks exactly like sentence-transformers does.

Checks (non-zero exit otherwise): an independent float64 re-implementation of the
metrics (the formulas documented in the JSON "semantics" block) agrees with ST to 1e-12
and gives the same ranking; ST's metrics do not depend on corpus_chunk_size (1, 3, 7,
50000) nor on small k lists that force the torch.topk boundary-tie path; queries with an
empty relevant set give the same metrics as leaving them out; the file re-parses to the
identical values.

Usage (from the repository root, ~5 s):
    tools/reference/.venv/bin/python tools/reference/make_ir_fixtures.py
"""
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

import sentence_transformers
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim, dot_score

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "ir" / "ir_cases.json"
DIM = 8
GRID = 32  # vectors are k / GRID, |k| <= 127
SCORE_FUNCTIONS = {"cosine": cos_sim, "dot": dot_score}
DEFAULT_K = {
    "accuracy_at_k": [1, 3, 5, 10],
    "precision_recall_at_k": [1, 3, 5, 10],
    "mrr_at_k": [10],
    "ndcg_at_k": [10],
    "map_at_k": [100],
}
COS_GAP = 1e-5


class _CardData:
    def set_evaluation_metrics(self, *args, **kwargs):
        pass


class LookupModel:
    """Stands in for a SentenceTransformer: text (an id) -> fixed float32 vector."""

    def __init__(self, table):
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.model_card_data = _CardData()
        self.calls = []

    def _encode(self, sentences, convert_to_tensor=True, truncate_dim=None, **kwargs):
        assert convert_to_tensor and truncate_dim is None
        self.calls.append(list(sentences))
        return torch.from_numpy(np.stack([self.table[s] for s in sentences]))

    def encode_query(self, sentences, **kwargs):
        return self._encode(sentences, **kwargs)

    def encode_document(self, sentences, **kwargs):
        return self._encode(sentences, **kwargs)


def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    sys.exit(1)


def grid(x):
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * GRID), -127, 127) / GRID


# --------------------------------------------------------------------------- oracle run


def run_st(queries, corpus, relevant, ks, chunk=50000, with_predictions=True):
    """Returns (metrics dict as ST returns it, ranking {fn: {qid: [(id, score), ...]}}, evaluated qids)."""
    table = {**queries, **corpus}
    ev = InformationRetrievalEvaluator(
        queries={q: q for q in queries},
        corpus={d: d for d in corpus},
        relevant_docs={q: set(v) for q, v in relevant.items()},
        corpus_chunk_size=chunk,
        name="",
        write_csv=False,
        score_functions=dict(SCORE_FUNCTIONS),
        write_predictions=with_predictions,
        **ks,
    )
    model = LookupModel(table)
    ranking = {}
    with tempfile.TemporaryDirectory() as tmp:
        metrics = ev(model, output_path=tmp)
        if with_predictions:
            for fn in SCORE_FUNCTIONS:
                path = Path(tmp) / f"Information-Retrieval_evaluation_predictions_{fn}.jsonl"
                ranking[fn] = {}
                for line in path.read_text().splitlines():
                    p = json.loads(line)
                    ranking[fn][p["query_id"]] = [(r["corpus_id"], r["score"]) for r in p["results"]]
    return metrics, ranking, list(ev.queries_ids), ev


# --------------------------------------------------------------- independent float64 re-implementation


def scores64(fn, q, D):
    q = np.asarray(q, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    if fn == "cosine":  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
        q = q / max(np.linalg.norm(q), 1e-12)
        D = D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12)
    return D @ q


def rank64(fn, q, corpus):
    ids = list(corpus)
    s = scores64(fn, q, np.stack([corpus[d] for d in ids]))
    return sorted(zip(ids, s.tolist()), key=lambda t: (-t[1], t[0]))


def metrics64(queries, corpus, relevant, ks):
    max_k = max(max(v) for v in ks.values())
    evaluated = [q for q in queries if len(relevant.get(q, [])) > 0]
    out = {}
    for fn in SCORE_FUNCTIONS:
        per = {name: {k: [] for k in ks[key]} for name, key in
               [("accuracy", "accuracy_at_k"), ("precision", "precision_recall_at_k"),
                ("recall", "precision_recall_at_k"), ("ndcg", "ndcg_at_k"),
                ("mrr", "mrr_at_k"), ("map", "map_at_k")]}
        for q in evaluated:
            R = set(relevant[q])
            hits = [d for d, _ in rank64(fn, queries[q], corpus)][:max_k]
            rel = [1 if d in R else 0 for d in hits]
            for k in ks["accuracy_at_k"]:
                per["accuracy"][k].append(1.0 if any(rel[:k]) else 0.0)
            for k in ks["precision_recall_at_k"]:
                per["precision"][k].append(sum(rel[:k]) / k)
                per["recall"][k].append(sum(rel[:k]) / len(R))
            for k in ks["mrr_at_k"]:
                first = next((i for i, r in enumerate(rel[:k]) if r), None)
                per["mrr"][k].append(0.0 if first is None else 1.0 / (first + 1))
            for k in ks["ndcg_at_k"]:
                dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel[:k]))
                idcg = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(R))))
                per["ndcg"][k].append(dcg / idcg)
            for k in ks["map_at_k"]:
                n, s = 0, 0.0
                for i, r in enumerate(rel[:k]):
                    if r:
                        n += 1
                        s += n / (i + 1)
                per["map"][k].append(s / min(k, len(R)))
        for name, d in per.items():
            for k, vals in d.items():
                out[f"{fn}_{name}@{k}"] = float(np.mean(vals))
    return out


def check_separation(queries, corpus):
    """Cosine: equal float64 scores only for docs with identical normalised vectors, all other
    scores > COS_GAP apart. Dot: exact (dyadic) so nothing to check. Zero queries skipped (all 0)."""
    ids = list(corpus)
    D = np.stack([corpus[d] for d in ids])
    Dn = D / np.maximum(np.linalg.norm(D, axis=1, keepdims=True), 1e-12)
    for q, v in queries.items():
        if not np.any(v):
            continue
        s = scores64("cosine", v, D)
        for i in range(len(ids)):
            for j in range(i + 1, len(ids)):
                same_dir = np.array_equal(Dn[i], Dn[j])
                if same_dir != (s[i] == s[j]):
                    return False
                if not same_dir and abs(s[i] - s[j]) <= COS_GAP:
                    return False
    return True


# --------------------------------------------------------------------------- cases


def ids(prefix, n, pad):
    return [f"{prefix}{i:0{pad}d}" if pad else f"{prefix}{i}" for i in range(n)]


def near(rng, v, noise):
    return grid(np.asarray(v) + noise * rng.standard_normal(DIM))


def case_basic(rng):
    Q, N = 6, 20
    D = grid(rng.standard_normal((N, DIM)))
    corpus = dict(zip(ids("d", N, 2), D))
    queries, relevant = {}, {}
    dids = list(corpus)
    for q in ids("q", Q, 0):
        r = sorted(rng.choice(N, int(rng.integers(1, 4)), replace=False).tolist())
        relevant[q] = [dids[i] for i in r]
        queries[q] = near(rng, 0.6 * D[r[0]], 0.8)
    return queries, corpus, relevant, None


def case_ties(rng):
    N = 20
    dids = ids("d", N, 0)  # unpadded: string order d0 < d1 < d10 < ... < d19 < d2 < ...
    D = {d: grid(rng.standard_normal(DIM)) for d in dids}
    D["d10"] = D["d2"].copy()                                   # pair {d10, d2}
    D["d1"] = D["d15"].copy(); D["d17"] = D["d15"].copy()       # triple {d1, d15, d17}
    D["d5"] = grid(0.5 * rng.standard_normal(DIM))
    D["d7"] = 2 * D["d5"]                                       # cosine-only tie {d5, d7}
    for d in ("d6", "d8", "d9"):
        D[d] = D["d4"].copy()                                   # quadruple {d4, d6, d8, d9}
    queries = {
        "q0": near(rng, D["d2"], 0.25),
        "q1": near(rng, D["d15"], 0.25),
        "q2": near(rng, D["d7"], 0.25),
        "q3": near(rng, D["d4"], 0.25),
        "q4": grid(rng.standard_normal(DIM)),
    }
    relevant = {
        "q0": ["d15", "d2"],
        "q1": ["d17"],
        "q2": ["d5"],
        "q3": ["d9"],
        "q4": ["d10", "d16", "d2"],
    }

    def want(ranking):
        top = {fn: {q: [d for d, _ in r] for q, r in v.items()} for fn, v in ranking.items()}
        ok = True
        for fn in SCORE_FUNCTIONS:
            ok &= top[fn]["q0"][:2] == ["d10", "d2"]
            ok &= top[fn]["q1"][:3] == ["d1", "d15", "d17"]
            ok &= top[fn]["q3"][:4] == ["d4", "d6", "d8", "d9"]
        ok &= top["cosine"]["q2"][:2] == ["d5", "d7"]
        ok &= top["dot"]["q2"][0] == "d7" and top["dot"]["q2"].index("d5") > 0
        return ok

    return queries, dict(D), relevant, want


def case_no_relevant(rng):
    Q, N = 6, 15
    D = grid(rng.standard_normal((N, DIM)))
    dids = ids("d", N, 2)
    corpus = dict(zip(dids, D))
    queries = {q: grid(rng.standard_normal(DIM)) for q in ids("q", Q, 0)}
    relevant = {
        "q0": ["d03", "d11"],
        "q1": [],                 # empty set -> skipped by ST
        "q2": ["d07"],
        "q3": ["d00", "d05", "d14"],
        # q4: no entry at all -> skipped by ST
        "q5": ["d09"],
        "q9": ["d01"],            # not a query -> ignored
    }
    # make q0 / q3 find something early so the skipped-vs-zero difference is visible
    queries["q0"] = near(rng, D[3], 0.5)
    queries["q3"] = near(rng, D[5], 0.5)
    return queries, corpus, relevant, None


def case_small_corpus(rng):
    N = 4
    D = grid(rng.standard_normal((N, DIM)))
    corpus = dict(zip(ids("d", N, 0), D))
    queries = {q: grid(rng.standard_normal(DIM)) for q in ids("q", 5, 0)}
    relevant = {
        "q0": ["d1"],
        "q1": ["d0", "d2"],
        "q2": ["d0", "d1", "d2", "d3"],
        "q3": ["d3"],
        "q4": ["d0", "d2", "d3"],
    }
    return queries, corpus, relevant, None


def case_many_relevant(rng):
    N = 40
    D = grid(rng.standard_normal((N, DIM)))
    dids = ids("d", N, 2)
    corpus = dict(zip(dids, D))
    queries, relevant = {}, {}
    for q, n in zip(ids("q", 4, 0), (8, 12, 1, 3)):
        r = sorted(rng.choice(N, n, replace=False).tolist())
        relevant[q] = [dids[i] for i in r]
        queries[q] = near(rng, 0.5 * D[r].mean(axis=0) * math.sqrt(n), 0.7)

    def want(ranking):  # some relevant docs of q0 / q1 lie beyond rank 10 (MAP@100 sees them)
        for fn in SCORE_FUNCTIONS:
            for q in ("q0", "q1"):
                ranked = [d for d, _ in ranking[fn][q]]
                pos = [ranked.index(d) for d in relevant[q]]
                if not (min(pos) < 5 and max(pos) >= 10):
                    return False
        return True

    return queries, corpus, relevant, want


def case_relevant_not_in_corpus(rng):
    N = 10
    D = grid(rng.standard_normal((N, DIM)))
    corpus = dict(zip(ids("d", N, 2), D))
    queries = {"q0": near(rng, D[2], 0.5), "q1": grid(rng.standard_normal(DIM)), "q2": near(rng, D[5], 0.5)}
    relevant = {"q0": ["d02", "dX"], "q1": ["dY"], "q2": ["d05"]}
    return queries, corpus, relevant, None


def case_zero_vectors(rng):
    N = 8
    D = grid(rng.standard_normal((N, DIM)))
    D[3] = 0.0
    corpus = dict(zip(ids("d", N, 0), D))
    queries = {"q0": np.zeros(DIM), "q1": grid(rng.standard_normal(DIM))}
    relevant = {"q0": ["d3", "d5"], "q1": ["d1", "d3"]}
    return queries, corpus, relevant, None


CUSTOM_K = {
    "accuracy_at_k": [1, 2],
    "precision_recall_at_k": [2, 7],
    "mrr_at_k": [1, 5],
    "ndcg_at_k": [3, 50],
    "map_at_k": [5, 15],
}

CASES = [
    # name, builder, first seed, k lists, description
    ("basic", case_basic, 1000, DEFAULT_K,
     "6 queries, 20 docs, 1-3 relevant docs per query."),
    ("ties", case_ties, 2000, DEFAULT_K,
     "Duplicate doc vectors give exactly equal scores. Unpadded ids (d0..d19) so string order "
     "(d1 < d10 < d15 < d17 < d2) differs from numeric order. q0: {d10,d2} tie at ranks 1-2, relevant d2 "
     "ranks 2nd (d10 sorts first). q1: {d1,d15,d17} tie at ranks 1-3, relevant d17 3rd (accuracy@1 = 0). "
     "q2: d7 = 2*d5 exactly: cosine tie {d5,d7} (d5 first, relevant), dot has d7 (2x score) first. "
     "q3: {d4,d6,d8,d9} tie at ranks 1-4 straddling the k=3 cutoff, relevant d9 4th. q4: random query."),
    ("no_relevant", case_no_relevant, 3000, DEFAULT_K,
     "q1 has an empty relevant list, q4 has no entry in 'relevant', 'q9' is in 'relevant' but not a "
     "query: ST evaluates only q0, q2, q3, q5."),
    ("small_corpus", case_small_corpus, 4000, DEFAULT_K,
     "4 docs: k = 5, 10, 100 exceed the corpus; precision@k still divides by k."),
    ("many_relevant", case_many_relevant, 5000, DEFAULT_K,
     "40 docs; q0 has 8 relevant docs, q1 has 12 (> 10: ideal DCG@10 is capped at 10 terms), q2 1, q3 3; "
     "some relevant docs of q0/q1 rank beyond 10, so MAP@100 differs from a top-10 computation."),
    ("relevant_not_in_corpus", case_relevant_not_in_corpus, 6000, DEFAULT_K,
     "Relevant ids absent from the corpus (dX, dY) still count in |R| (recall, NDCG ideal DCG, MAP "
     "denominator); q1's only relevant doc is absent: it is evaluated and scores 0 everywhere."),
    ("zero_vectors", case_zero_vectors, 7000, DEFAULT_K,
     "q0 is the zero vector and d3 is the zero vector: ST's cosine uses F.normalize (x / max(||x||, 1e-12)) "
     "so their cosine scores are exactly 0 (not NaN); q0 scores 0 against every doc under both functions, "
     "so its ranking is the plain string order of the doc ids."),
    ("custom_k", case_many_relevant, 5000, CUSTOM_K,
     "Same data as many_relevant, non-default k lists (max k = 50 > corpus size 40): shows key names and "
     "order for several k per metric, MAP@5 with |R| = 12 divides by min(5, 12) = 5."),
]


# --------------------------------------------------------------------------- main


def vec(v):
    return [float(x) for x in np.asarray(v, dtype=np.float32)]


def build_case(name, builder, seed0, ks, desc):
    for seed in range(seed0, seed0 + 500):
        rng = np.random.default_rng(seed)
        queries, corpus, relevant, want = builder(rng)
        queries = {k: grid(v) for k, v in queries.items()}
        corpus = {k: grid(v) for k, v in corpus.items()}
        if not check_separation(queries, corpus):
            continue
        if want is not None:
            probe = {fn: {q: rank64(fn, queries[q], corpus) for q in queries} for fn in SCORE_FUNCTIONS}
            if not want(probe):
                continue
        break
    else:
        fail(f"{name}: no seed in [{seed0}, {seed0 + 500}) satisfies the constraints")

    metrics, ranking, evaluated, ev = run_st(queries, corpus, relevant, ks)

    # key names: f"{fn}_{metric}@{k}", fn in the score_functions dict order, metrics in this order
    expected_keys = [f"{fn}_{m}@{k}" for fn in SCORE_FUNCTIONS
                     for m, key in [("accuracy", "accuracy_at_k"), ("precision", "precision_recall_at_k"),
                                    ("recall", "precision_recall_at_k"), ("ndcg", "ndcg_at_k"),
                                    ("mrr", "mrr_at_k"), ("map", "map_at_k")]
                     for k in ks[key]]
    if list(metrics) != expected_keys:
        fail(f"{name}: key order {list(metrics)} != {expected_keys}")
    if any(type(v) is not float or not math.isfinite(v) for v in metrics.values()):
        fail(f"{name}: non-float metric")

    # independent float64 re-implementation: same metrics, same ranking
    ref = metrics64(queries, corpus, relevant, ks)
    for k, v in metrics.items():
        if abs(v - ref[k]) > 1e-12:
            fail(f"{name}: {k} ST {v!r} vs re-implementation {ref[k]!r}")
    max_k = max(max(v) for v in ks.values())
    for fn in SCORE_FUNCTIONS:
        for q in evaluated:
            st_ids = [d for d, _ in ranking[fn][q]]
            ref_ids = [d for d, _ in rank64(fn, queries[q], corpus)][:max_k]
            if st_ids != ref_ids:
                fail(f"{name}/{fn}/{q}: ST ranking {st_ids} vs re-implementation {ref_ids}")
            if len(st_ids) != min(max_k, len(corpus)):
                fail(f"{name}: retrieval depth")

    # chunking and the topk boundary-tie path do not change anything
    for chunk in (1, 3, 7):
        # (float32 cosine scores move by ~1 ulp with the GEMM shape; ids and metrics must not)
        m2, r2, _, _ = run_st(queries, corpus, relevant, ks, chunk=chunk)
        if m2 != metrics:
            fail(f"{name}: corpus_chunk_size={chunk} changes the metrics")
        for fn in SCORE_FUNCTIONS:
            for q in evaluated:
                a, b = ranking[fn][q], r2[fn][q]
                if [d for d, _ in a] != [d for d, _ in b] or any(abs(x - y) > 1e-6 for (_, x), (_, y) in zip(a, b)):
                    fail(f"{name}: corpus_chunk_size={chunk} changes the ranking of {fn}/{q}")
    small_k = {k: [1, 2] for k in ks}
    m_small, _, _, _ = run_st(queries, corpus, relevant, small_k, with_predictions=False)
    ref_small = metrics64(queries, corpus, relevant, small_k)
    for k, v in m_small.items():
        if abs(v - ref_small[k]) > 1e-12:
            fail(f"{name}: small-k (topk boundary path) {k} ST {v!r} vs {ref_small[k]!r}")

    # empty / missing relevance == leaving the query out
    if set(evaluated) != {q for q in queries if len(relevant.get(q, [])) > 0}:
        fail(f"{name}: evaluated queries {evaluated}")
    if len(evaluated) < len(queries):
        sub_q = {q: queries[q] for q in evaluated}
        m3, _, _, _ = run_st(sub_q, corpus, relevant, ks, with_predictions=False)
        if m3 != metrics:
            fail(f"{name}: skipping empty-relevance queries is not the same as removing them")

    # exact ties really are exact in ST's float32 scores
    ties_seen = {}
    for fn in SCORE_FUNCTIONS:
        n = 0
        for q in evaluated:
            sc = [s for _, s in ranking[fn][q]]
            n += sum(1 for a, b in zip(sc, sc[1:]) if a == b)
            if any(a < b for a, b in zip(sc, sc[1:])):
                fail(f"{name}: ranking not sorted by score")
        ties_seen[fn] = n

    notes = [desc,
             "Observed: equal scores are ordered by ascending corpus id (string order), whatever the corpus "
             "order or corpus_chunk_size; queries with no or an empty relevant list are not evaluated at all "
             "(left out of every mean, not counted as 0)."]
    notes.append(f"ST evaluated queries (in order): {evaluated}; skipped: "
                 f"{[q for q in queries if q not in evaluated]}.")
    notes.append(f"Retrieval depth = min(max over all k lists = {max_k}, corpus size {len(corpus)}) = "
                 f"{min(max_k, len(corpus))}. Adjacent exactly-equal scores in the rankings: {ties_seen}.")

    return {
        "name": name,
        "dim": DIM,
        "seed": seed,
        "k": ks,
        "queries": {q: vec(v) for q, v in queries.items()},
        "corpus": {d: vec(v) for d, v in corpus.items()},
        "relevant": {q: list(v) for q, v in relevant.items()},
        "evaluated_queries": evaluated,
        "metrics": metrics,
        "ranking": {fn: {q: {"ids": [d for d, _ in r], "scores": [float(s) for _, s in r]}
                         for q, r in ranking[fn].items()} for fn in SCORE_FUNCTIONS},
        "notes": notes,
    }


SEMANTICS = {
    "source": "sentence_transformers/sentence_transformer/evaluation/information_retrieval.py "
              "(InformationRetrievalEvaluator.compute_all_metrics / compute_metrics; compute_metrices is an alias "
              "of compute_all_metrics), called as evaluator(model) with name=\"\", "
              "score_functions={\"cosine\": util.cos_sim, \"dot\": util.dot_score}",
    "keys": "f\"{score_function}_{metric}@{k}\" with metric in accuracy, precision, recall, ndcg, mrr, map; "
            "dict order: score functions in the order given, then accuracy@k..., precision@k..., recall@k..., "
            "ndcg@k..., mrr@k..., map@k... (each k list in the given order). With a non-empty name every key "
            "gets the prefix name + \"_\". Values are Python floats.",
    "scores": "cosine = normalize(q) . normalize(d), normalize(x) = x / max(||x||_2, 1e-12) (zero vector -> "
              "score 0); dot = q . d; float32 (torch.mm). Dot scores here are exact (dyadic inputs); float32 "
              "cosine scores can differ by ~1 ulp with the GEMM shape (compare ranking scores to ~1e-6, ids "
              "exactly).",
    "ranking": "Per query, docs ordered by (-score, corpus_id) with corpus_id compared as a string "
               "(Python code-point order: 'd10' < 'd2'); exact score ties are broken by ascending id, "
               "independently of corpus order, corpus_chunk_size and torch.topk (ST re-selects boundary ties "
               "by the same total order). Only the first max_k docs are kept, max_k = max over ALL k lists "
               "(accuracy, precision/recall, mrr, ndcg, map), capped by the corpus size.",
    "evaluated_queries": "Only queries whose id is in relevant_docs with a non-empty set; others are dropped "
                         "before encoding and do not enter any average (not counted as 0). relevant_docs "
                         "entries for unknown query ids are ignored. Relevant ids missing from the corpus "
                         "still count in |R|. Every metric is the plain mean over the evaluated queries "
                         "(ZeroDivisionError in ST if none).",
    "accuracy@k": "1 if any of the top-k docs is relevant, else 0",
    "precision@k": "(# relevant in top-k) / k   (k, even when fewer than k docs were retrieved)",
    "recall@k": "(# relevant in top-k) / |R|",
    "mrr@k": "1 / rank of the first relevant doc within the top k (rank from 1), else 0",
    "ndcg@k": "DCG / IDCG, binary relevance: DCG = sum_{i=1..min(k, retrieved)} rel_i / log2(i + 1); "
              "IDCG = sum_{i=1..min(k, |R|)} 1 / log2(i + 1)",
    "map@k": "AP@k = (sum over ranks i <= k holding a relevant doc of (# relevant in top i) / i) / min(k, |R|)",
}


def main():
    cases = [build_case(*c) for c in CASES]
    doc = {
        "description": "Oracle for EmbedTune's IR evaluator: sentence-transformers InformationRetrievalEvaluator "
                       "on fixed float32 embeddings (vector components are multiples of 1/32). Generated by "
                       "tools/reference/make_ir_fixtures.py.",
        "versions": {
            "sentence-transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "score_functions": list(SCORE_FUNCTIONS),
        "semantics": SEMANTICS,
        "cases": cases,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=True) + "\n"
    if json.loads(text) != json.loads(json.dumps(doc)):
        fail("JSON round trip")
    for c in json.loads(text)["cases"]:
        for v in list(c["queries"].values()) + list(c["corpus"].values()):
            if any(float(np.float32(x)) != x or x * GRID != round(x * GRID) for x in v):
                fail("vector component not an exact float32 multiple of 1/32")
    if len(text.encode()) >= 200_000:
        fail(f"fixture too large: {len(text.encode())} bytes")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    h = hashlib.sha256(text.encode()).hexdigest()
    for c in cases:
        print(f"{c['name']:<24} seed {c['seed']}  queries {len(c['queries'])} (evaluated "
              f"{len(c['evaluated_queries'])})  docs {len(c['corpus'])}  "
              f"{next(k for k in c['metrics'] if 'ndcg' in k)} {next(v for k, v in c['metrics'].items() if 'ndcg' in k):.6f}")
    print(f"{OUT.relative_to(ROOT)}  {len(text.encode())} bytes  sha256 {h[:16]}")


if __name__ == "__main__":
    main()
