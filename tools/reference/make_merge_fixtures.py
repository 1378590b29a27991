"""Reference fixtures for `embedtune merge` (LoRA adapter fusion): Tests/Fixtures/merge/.

    tools/reference/.venv/bin/python tools/reference/make_merge_fixtures.py

Writes three small PEFT LoRA adapters for Tests/Fixtures/tiny-qwen3 (adapters/a0, a1, a2), a list of
merge cases (cases.json), the expected merged ΔW per case (expected/<name>.safetensors, one float32
[out, in] tensor per module, key = module path such as `layers.0.self_attn.q_proj`) and test vectors
for the DARE counter-based RNG (rng_vectors.json).

Everything is computed in float64 numpy from the float32-saved A and B and stored as float32.
The semantics are those of peft 0.21 `peft/utils/merge_utils.py`, applied to the dense task tensors
T_i = ΔW_i = (lora_alpha_i / r_i) · B_i @ A_i (like peft's `*_svd` combination types, which work on
delta weights), with two deliberate differences:

* DARE's random mask comes from the counter-based splitmix64 stream below instead of
  torch.bernoulli, so that Swift can reproduce it bit for bit.
* `linear` is Σ w_i T_i / Σ w_i (a weighted mean); peft's own `linear` combination is plain
  task arithmetic on sqrt-weighted A and B, which is a different thing.

Notes on peft's semantics followed here:

* Sign election (ties, dare_ties) uses the *unweighted* pruned (for dare: masked and rescaled)
  task tensors: `calculate_majority_sign_mask` is called before the weights are applied, so a
  negative weight never changes the elected sign. "total": sign of Σ_i P_i; "frequency": sign of
  Σ_i sign(P_i); a tie (sum exactly 0) elects +1.
* An entry takes part in the disjoint merge iff sign(P_i) == elected sign, so exact zeros (pruned
  entries, and adapters that do not target the module) never count. The disjoint merge divides the
  sum of the agreeing *weighted* entries by the *number* of agreeing entries (clamped to >= 1),
  not by a sum of weights.
* Magnitude pruning keeps k = int(density · numel) entries with the largest |x| per task tensor
  (per module, per adapter). density >= 1 means no pruning at all (and, for DARE, no rescale).
* DARE: kept entries are divided by density (peft: `tensor * mask / density`).

Self-checks (the script fails if one does not hold): magnitude_prune / ties / task_arithmetic equal
peft's merge_utils functions on torch float64 tensors; dare_linear / dare_ties equal peft's functions
with `random_pruning` patched to use our mask; the svd truncation has the requested rank; cat equals
task_arithmetic; the adapters load in peft on tiny-qwen3 and peft's get_delta_weight equals ΔW;
peft's add_weighted_adapter (svd, cat, ties_svd / magnitude_prune_svd at full rank) agrees with the
expected tensors.
"""
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from safetensors.numpy import save_file

from peft.utils import merge_utils as mu

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "Tests/Fixtures/tiny-qwen3"
OUT = ROOT / "Tests/Fixtures/merge"

SHAPES = {  # [out, in]
    "q_proj": (64, 64), "k_proj": (32, 64), "v_proj": (32, 64), "o_proj": (64, 64),
    "gate_proj": (128, 64), "up_proj": (128, 64), "down_proj": (64, 128),
}
BLOCK = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
         "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
LAYERS = 2

ADAPTERS = {
    "a0": dict(seed=1000, r=2, lora_alpha=4, targets=["q_proj", "v_proj"]),
    "a1": dict(seed=1001, r=4, lora_alpha=16, targets=["q_proj", "v_proj", "down_proj"]),
    "a2": dict(seed=1002, r=8, lora_alpha=8,
               targets=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]),  # not gate/up: keeps the fixture ~2 MB
}
STD = 0.3

ALL3 = ["a0", "a1", "a2"]
CASES = [
    dict(name="linear_equal", method="linear", adapters=ALL3, weights=[1.0, 1.0, 1.0]),
    dict(name="linear_weighted", method="linear", adapters=ALL3, weights=[0.2, 0.5, 0.3]),
    dict(name="task_arithmetic_negative", method="task_arithmetic", adapters=ALL3, weights=[0.5, 1.0, -0.3]),
    dict(name="magnitude_prune_d03", method="magnitude_prune", adapters=ALL3, weights=[1.0, 0.7, 0.4],
         density=0.3),
    dict(name="ties_total_d05", method="ties", adapters=ALL3, weights=[1.0, 0.7, 0.4], density=0.5,
         majority_sign_method="total"),
    dict(name="ties_frequency_d03", method="ties", adapters=ALL3, weights=[0.5, 1.0, -0.3], density=0.3,
         majority_sign_method="frequency"),
    dict(name="ties_total_d1", method="ties", adapters=ALL3, weights=[1.0, 1.0, 1.0], density=1.0,
         majority_sign_method="total"),
    dict(name="dare_linear_d05_s7", method="dare_linear", adapters=ALL3, weights=[0.6, 1.0, 0.8], density=0.5,
         seed=7),
    dict(name="dare_ties_total_d04_s11", method="dare_ties", adapters=ALL3, weights=[1.0, 1.0, 1.0],
         density=0.4, majority_sign_method="total", seed=11),
    dict(name="svd_r4", method="svd", adapters=ALL3, weights=[1.0, 1.0, 1.0], svd_rank=4),
    dict(name="svd_r1", method="svd", adapters=ALL3, weights=[1.0, 1.0, 1.0], svd_rank=1),
    dict(name="cat", method="cat", adapters=ALL3, weights=[0.7, 1.0, 1.3]),
    dict(name="single_a1", method="task_arithmetic", adapters=["a1"], weights=[1.0]),
    dict(name="ties_frequency_a0_a2", method="ties", adapters=["a0", "a2"], weights=[1.0, 1.0], density=0.5,
         majority_sign_method="frequency"),
]


def module_path(layer, proj):
    return f"layers.{layer}.{BLOCK[proj]}.{proj}"


def module_proj(path):
    return path.rsplit(".", 1)[1]


# ---------------------------------------------------------------- DARE RNG (splitmix64, uint64 mod 2^64)

U64 = np.uint64
GOLDEN, MUL1, MUL2 = U64(0x9E3779B97F4A7C15), U64(0xBF58476D1CE4E5B9), U64(0x94D049BB133111EB)


def splitmix64(x):
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + GOLDEN
        z = (z ^ (z >> U64(30))) * MUL1
        z = (z ^ (z >> U64(27))) * MUL2
        return z ^ (z >> U64(31))


def splitmix64_int(x):  # pure-Python cross-check
    m = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def stream(seed, i, m):
    return splitmix64(splitmix64(splitmix64(U64(seed)) ^ U64(i)) ^ U64(m))


def dare_uniform(seed, i, m, numel):
    """u_e = splitmix64(h ^ e) >> 40, an integer in [0, 2^24), for e = 0 ..< numel."""
    h = stream(seed, i, m)
    return splitmix64(h ^ np.arange(numel, dtype=np.uint64)) >> U64(40)


def dare_keep(seed, i, m, shape, density):
    u = dare_uniform(seed, i, m, int(np.prod(shape)))
    return (u.astype(np.float64) < density * float(1 << 24)).reshape(shape)


# ---------------------------------------------------------------- merge methods (float64 numpy)

def magnitude_prune_np(t, density):
    if density >= 1:
        return t
    k = int(density * t.size)
    flat = t.reshape(-1)
    keep = np.zeros(t.size, dtype=bool)
    if k > 0:
        keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
    return np.where(keep, flat, 0.0).reshape(t.shape)


def dare_np(t, keep, density):
    if density >= 1:
        return t
    return np.where(keep, t / density, 0.0)


def elect_and_merge(p, w, method):
    """peft calculate_majority_sign_mask on the unweighted p, then disjoint_merge of the weighted p."""
    sign = np.sign(p)
    mag = p.sum(0) if method == "total" else sign.sum(0)
    majority = np.where(mag >= 0, 1.0, -1.0)
    mask = sign == majority
    mixed = (p * w[:, None, None] * mask).sum(0)
    return mixed / np.maximum(mask.sum(0), 1).astype(np.float64)


def merge_module(case, m_index, T, w):
    """T: [n, out, in] float64 task tensors; w: [n] float64."""
    meth, d = case["method"], case.get("density")
    if meth == "linear":
        return (w[:, None, None] * T).sum(0) / w.sum()
    if meth in ("task_arithmetic", "cat"):
        return (w[:, None, None] * T).sum(0)
    if meth == "magnitude_prune":
        P = np.stack([magnitude_prune_np(t, d) for t in T])
        return (w[:, None, None] * P).sum(0)
    if meth == "ties":
        P = np.stack([magnitude_prune_np(t, d) for t in T])
        return elect_and_merge(P, w, case["majority_sign_method"])
    if meth in ("dare_linear", "dare_ties"):
        P = np.stack([dare_np(t, dare_keep(case["seed"], i, m_index, t.shape, d), d) for i, t in enumerate(T)])
        if meth == "dare_linear":
            return (w[:, None, None] * P).sum(0)
        return elect_and_merge(P, w, case["majority_sign_method"])
    if meth == "svd":
        M = (w[:, None, None] * T).sum(0)
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        r = case["svd_rank"]
        return (U[:, :r] * S[:r]) @ Vt[:r]
    raise ValueError(meth)


# ---------------------------------------------------------------- peft cross-checks

def peft_module(case, m_index, T, w):
    """The same case through peft's own merge_utils on torch float64 tensors."""
    meth, d = case["method"], case.get("density")
    tl = [torch.from_numpy(t.copy()) for t in T]
    tw = torch.from_numpy(w.copy())
    if meth in ("task_arithmetic", "cat"):
        return mu.task_arithmetic(tl, tw).numpy()
    if meth == "linear":
        return (mu.task_arithmetic(tl, tw) / tw.sum()).numpy()
    if meth == "magnitude_prune":
        return mu.magnitude_prune(tl, tw, d).numpy()
    if meth == "ties":
        return mu.ties(tl, tw, d, case["majority_sign_method"]).numpy()
    if meth in ("dare_linear", "dare_ties"):
        masks = [torch.from_numpy(dare_keep(case["seed"], i, m_index, t.shape, d).astype(np.float64))
                 for i, t in enumerate(T)]
        calls = iter(range(len(masks)))
        orig = mu.random_pruning

        def patched(tensor, density, rescale):  # peft's random_pruning with our mask instead of bernoulli
            i = next(calls)
            pruned = tensor * masks[i]
            return pruned / density if rescale else pruned

        mu.random_pruning = patched
        try:
            if meth == "dare_linear":
                return mu.dare_linear(tl, tw, d).numpy()
            return mu.dare_ties(tl, tw, d, case["majority_sign_method"]).numpy()
        finally:
            mu.random_pruning = orig
    return None


def check_in_peft(adapter_dirs, deltas, expected):
    """Load the adapters in peft (float64) and compare get_delta_weight and add_weighted_adapter."""
    from peft import PeftModel
    from transformers import AutoModel

    base = AutoModel.from_pretrained(str(BASE), dtype=torch.float64)
    model = PeftModel.from_pretrained(base, str(adapter_dirs["a0"]), adapter_name="a0")
    model.load_adapter(str(adapter_dirs["a1"]), adapter_name="a1")
    model.load_adapter(str(adapter_dirs["a2"]), adapter_name="a2")
    mods = dict(model.base_model.model.named_modules())
    worst = 0.0
    for name, per_module in deltas.items():
        for path, dw in per_module.items():
            got = mods[path].get_delta_weight(name).detach().numpy()
            assert got.dtype == np.float64, got.dtype
            worst = max(worst, np.abs(got - dw).max())
    assert worst < 1e-12, worst
    print(f"peft get_delta_weight vs ΔW: max |Δ| {worst:.1e}")

    def merged_delta(new, paths):
        return {p: mods[p].get_delta_weight(new).detach().numpy() for p in paths}

    by_name = {c["name"]: c for c in CASES}
    checks = [  # (new adapter, case whose expected tensors it must reproduce, add_weighted_adapter kwargs)
        ("m_svd4", "svd_r4", dict(combination_type="svd", svd_rank=4)),
        ("m_svd1", "svd_r1", dict(combination_type="svd", svd_rank=1)),
        ("m_cat", "cat", dict(combination_type="cat")),
        ("m_ties", "ties_total_d05", dict(combination_type="ties_svd", svd_rank=64, svd_full_matrices=False, density=0.5,
                                           majority_sign_method="total")),
        ("m_tiesf", "ties_frequency_d03", dict(combination_type="ties_svd", svd_rank=64, svd_full_matrices=False, density=0.3,
                                               majority_sign_method="frequency")),
        ("m_mag", "magnitude_prune_d03", dict(combination_type="magnitude_prune_svd", svd_rank=64, svd_full_matrices=False, density=0.3)),
        ("m_tiesf2", "ties_frequency_a0_a2", dict(combination_type="ties_svd", svd_rank=64, svd_full_matrices=False, density=0.5,
                                                  majority_sign_method="frequency")),
    ]
    for new, case_name, kw in checks:
        case = by_name[case_name]
        model.add_weighted_adapter(case["adapters"], case["weights"], new, **kw)
        got = merged_delta(new, expected[case_name].keys())
        err = max(np.abs(got[p] - expected[case_name][p]).max() for p in got)
        # peft turns the weights into a float32 tensor, hence ~1e-8 and not 1e-15
        assert err < 1e-6, (case_name, err)
        print(f"peft add_weighted_adapter {kw['combination_type']:>20} vs {case_name:<22} max |Δ| {err:.1e}")


# ---------------------------------------------------------------- main

def make_adapter(name, spec):
    rng = np.random.default_rng(spec["seed"])
    tensors, deltas = {}, {}
    s = spec["lora_alpha"] / spec["r"]
    for layer in range(LAYERS):
        for proj in sorted(spec["targets"]):
            out_f, in_f = SHAPES[proj]
            a = (rng.standard_normal((spec["r"], in_f)) * STD).astype(np.float32)
            b = (rng.standard_normal((out_f, spec["r"])) * STD).astype(np.float32)
            path = module_path(layer, proj)
            tensors[f"base_model.model.{path}.lora_A.weight"] = a
            tensors[f"base_model.model.{path}.lora_B.weight"] = b
            deltas[path] = s * (b.astype(np.float64) @ a.astype(np.float64))
    config = {
        "peft_type": "LORA",
        "base_model_name_or_path": "tiny-qwen3",
        "r": spec["r"],
        "lora_alpha": spec["lora_alpha"],
        "target_modules": sorted(spec["targets"]),
        "lora_dropout": 0.0,
        "use_rslora": False,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_dora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    return tensors, config, deltas


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def main():
    warnings.filterwarnings("ignore", message="The density .* no pruning")
    if OUT.exists():
        shutil.rmtree(OUT / "adapters", ignore_errors=True)
        shutil.rmtree(OUT / "expected", ignore_errors=True)
    (OUT / "adapters").mkdir(parents=True, exist_ok=True)
    (OUT / "expected").mkdir(parents=True, exist_ok=True)

    # RNG sanity: splitmix64(0) is the first output of the reference splitmix64 seeded with 0.
    assert int(splitmix64(0)) == 0xE220A8397B1DCDAF
    for x in [0, 1, 7, 11, 2**63 + 5, 2**64 - 1]:
        assert int(splitmix64(U64(x))) == splitmix64_int(x)

    deltas, adapter_dirs = {}, {}
    for name, spec in ADAPTERS.items():
        tensors, config, dw = make_adapter(name, spec)
        d = OUT / "adapters" / name
        d.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(d / "adapter_model.safetensors"))
        write_json(d / "adapter_config.json", config)
        deltas[name], adapter_dirs[name] = dw, d

    expected, cases_json = {}, []
    margins = []
    for case in CASES:
        names, w = case["adapters"], np.asarray(case["weights"], dtype=np.float64)
        union = sorted(set().union(*[deltas[n].keys() for n in names]))
        out, res = {}, {}
        for m_index, path in enumerate(union):
            shape = SHAPES[module_proj(path)]
            T = np.stack([deltas[n].get(path, np.zeros(shape)) for n in names])
            got = merge_module(case, m_index, T, w)
            assert got.shape == shape and np.isfinite(got).all()

            ref = peft_module(case, m_index, T, w)
            if ref is not None:
                err = np.abs(ref - got).max()
                assert err < 1e-12, (case["name"], path, err)
            if case["method"] == "cat":
                ta = (w[:, None, None] * T).sum(0)
                assert np.array_equal(got, ta)
            if case["method"] == "svd":
                r = case["svd_rank"]
                assert np.linalg.matrix_rank(got) == r, (case["name"], path)
                S = np.linalg.svd((w[:, None, None] * T).sum(0), compute_uv=False)
                margins.append((case["name"], path, "svd gap s_r/s_r+1", S[r - 1] / S[r]))
            if case.get("density") is not None and case["density"] < 1 and case["method"] in ("ties", "magnitude_prune"):
                for t in T:  # how far the k-th largest |x| is from the (k+1)-th (a float32 Swift ΔW could flip ties)
                    if not t.any():
                        continue
                    k = int(case["density"] * t.size)
                    a = np.sort(np.abs(t).reshape(-1))[::-1]
                    margins.append((case["name"], path, "top-k gap rel", (a[k - 1] - a[k]) / a[k - 1]))
            if case["method"] in ("ties", "dare_ties") and case["majority_sign_method"] == "total":
                if case["method"] == "ties":
                    P = np.stack([magnitude_prune_np(t, case["density"]) for t in T])
                else:
                    P = np.stack([dare_np(t, dare_keep(case["seed"], i, m_index, t.shape, case["density"]),
                                          case["density"]) for i, t in enumerate(T)])
                tot = np.abs(P.sum(0))[np.abs(P).sum(0) > 0]
                margins.append((case["name"], path, "min |Σ P| (total sign)", tot.min()))
            out[path] = got.astype(np.float32)
            res[path] = got
        save_file(out, str(OUT / "expected" / f"{case['name']}.safetensors"))
        expected[case["name"]] = res
        entry = {"name": case["name"], "method": case["method"], "adapters": names, "weights": case["weights"]}
        for key in ("density", "majority_sign_method", "seed", "svd_rank"):
            if key in case:
                entry[key] = case[key]
        cases_json.append(entry)
    write_json(OUT / "cases.json", cases_json)

    # single adapter, weight 1: exactly s·B·A
    for path, dw in deltas["a1"].items():
        assert np.abs(expected["single_a1"][path] - dw).max() == 0
    # ties with density 1 really prunes nothing: recompute without pruning
    # cat == task_arithmetic with the cat weights (checked per module above)

    # RNG test vectors for Swift unit tests
    vec = {"splitmix64": [{"x": str(x), "out": str(splitmix64_int(x))} for x in [0, 1, 7, 2**64 - 1]], "streams": []}
    for seed, i, m in [(7, 0, 0), (7, 2, 13), (11, 1, 5)]:
        h = int(stream(seed, i, m))
        u = [int(x) for x in dare_uniform(seed, i, m, 8)]
        vec["streams"].append({"seed": seed, "i": i, "m": m, "h": str(h), "u_first8": u})
    write_json(OUT / "rng_vectors.json", vec)

    check_in_peft(adapter_dirs, deltas, expected)

    # keep-fraction sanity of the DARE mask
    keep = dare_keep(7, 0, 0, (128, 64), 0.5)
    print(f"DARE keep fraction at d=0.5 over 8192 entries: {keep.mean():.4f}")

    for kind in ("svd gap s_r/s_r+1", "top-k gap rel", "min |Σ P| (total sign)"):
        vals = [m for m in margins if m[2] == kind]
        worst = min(vals, key=lambda m: m[3])
        print(f"smallest {kind}: {worst[3]:.3e} ({worst[0]}, {worst[1]})")

    write_readme()
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            total += len(data)
            print(f"{hashlib.sha256(data).hexdigest()[:12]}  {len(data):>8}  {p.relative_to(ROOT)}")
    print(f"total {total} bytes")


README = """\
# Tests/Fixtures/merge — reference for `embedtune merge`

Generated by `tools/reference/make_merge_fixtures.py` (deterministic; a rerun gives byte-identical files):

```sh
tools/reference/.venv/bin/python tools/reference/make_merge_fixtures.py
```

## Contents

* `adapters/a0`, `a1`, `a2` — PEFT LoRA adapters for `../tiny-qwen3` (`adapter_config.json`,
  `adapter_model.safetensors` with `base_model.model.<module>.lora_A.weight` [r, in] and
  `...lora_B.weight` [out, r], float32; A, B ~ N(0, 0.3²)).
  a0: r 2, alpha 4, q/v; a1: r 4, alpha 16, q/v/down; a2: r 8, alpha 8, q/k/v/o/down (gate/up left out to keep the fixture small).
* `cases.json` — list of cases `{name, method, adapters, weights, density?, majority_sign_method?, seed?, svd_rank?}`.
* `expected/<name>.safetensors` — the merged ΔW of each case: one float32 tensor per module in the union of
  the case's adapters' modules, key = module path (`layers.0.self_attn.q_proj`), shape [out, in].
* `rng_vectors.json` — splitmix64 outputs and DARE stream values (u64 as decimal strings) for unit tests.

## Definitions

Per module, over the sorted (byte order) union of the case's modules, with task tensors
T_i = ΔW_i = (lora_alpha_i / r_i) · B_i @ A_i (a zero tensor if adapter i does not target the module) and weights w_i.
All arithmetic in float64, stored as float32. Semantics of peft 0.21 `peft/utils/merge_utils.py` on dense ΔW.

* `linear`: Σ w_i T_i / Σ w_i.
* `task_arithmetic`, `cat`: Σ w_i T_i.
* `magnitude_prune`: P_i = prune(T_i), Σ w_i P_i. prune keeps the k = int(density · numel) entries with the
  largest |x| of each T_i (per module, per adapter) and zeroes the rest; density >= 1: no pruning.
* `ties`: P_i = prune(T_i); elected sign σ = +1 if S >= 0 else −1, where S = Σ_i P_i ("total") or
  Σ_i sign(P_i) ("frequency") — on the **unweighted** P_i; then per entry
  Σ_i [sign(P_i) = σ] w_i P_i / max(1, #{i : sign(P_i) = σ}). Zeros never agree with σ, so pruned entries and
  non-targeting adapters do not count; the divisor is a count, not a sum of weights.
* `dare_linear`: P_i = T_i · keep_i / density (density >= 1: P_i = T_i), Σ w_i P_i.
* `dare_ties`: the same P_i, then the `ties` sign election and disjoint merge.
* `svd`: M = Σ w_i T_i, truncated to its top `svd_rank` singular triplets, U_r S_r V_rᵀ.

## DARE mask (counter-based, uint64 arithmetic mod 2^64)

```
splitmix64(x): z = x + 0x9E3779B97F4A7C15
               z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
               z = (z ^ (z >> 27)) * 0x94D049BB133111EB
               return z ^ (z >> 31)
h = splitmix64(splitmix64(splitmix64(seed) ^ i) ^ m)   # i: adapter index in the case, m: module index in the union
u_e = splitmix64(h ^ e) >> 40                          # e: row-major element index of the [out, in] tensor
keep_e = Double(u_e) < density * 2^24
```

## Numerics

Expected values reach |x| ≈ 9 (the DARE cases, rescaled by 1/density), where float32 storage alone rounds by up to
4.8e-7; computing ΔW in float32 and merging gives up to 8.3e-7 against these files. Compute in float64 (or compare
with a tolerance relative to max(1, |x|)). Decision margins (printed by the script): the k-th vs (k+1)-th largest
|x| in magnitude pruning differ by >= 1.2e-5 relative; for "total" sign election |Σ P| >= 5.3e-6 where not all zero;
s_r / s_(r+1) >= 1.024 in the svd cases. "frequency" cases contain exact count ties (elected +1): 1936 entries in
`ties_frequency_d03`, 1488 in `ties_frequency_a0_a2`.
"""


def write_readme():
    (OUT / "README.md").write_text(README, encoding="utf-8")


if __name__ == "__main__":
    main()
