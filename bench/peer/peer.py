#!/usr/bin/env python3
"""The Python peer of `embedtune bench train|embed`: the same workload on PyTorch + peft +
sentence-transformers, on the same synthetic texts, reported in the same units.

    peer.py train --model DIR [--batch-size 16 --negatives 3 --max-length 128 --steps 5
                  --warmup 2 --dropout nodrop|default --ranks 1 --threads N --json FILE]
    peer.py embed --model DIR [--batch-size 64 --max-length 128 --repeats 5 --json FILE]
    peer.py data  --rows N [--negatives 3] [--out FILE] [--compare SWIFT.jsonl]

One JSON object goes to stdout (and to --json FILE). See bench/peer/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import sys
import time

# ---------------------------------------------------------------------------------------------
# Synthetic data: a bit-exact port of SyntheticData / SplitMix64 (Sources/embedtune/BenchTrain.swift,
# Sources/EmbedTuneTraining/Trainer.swift).

MASK64 = (1 << 64) - 1
WORDS = ["soil", "nitrogen", "orchard", "irrigation", "yield", "pest", "control", "harvest", "seedling",
         "fertiliser", "pond", "oxygen", "livestock", "vaccine", "pruning", "drainage", "compost", "weather",
         "disease", "fungus", "spray", "market", "storage", "greenhouse", "tractor", "season", "planting"]
# `bench embed`'s word list (it draws with the system RNG; here seeded, texts long enough to truncate).
EMBED_WORDS = ["soil", "nitrogen", "orchard", "irrigation", "the", "of", "yield", "pest", "control",
               "水稻", "施肥", "病虫害", "fish", "pond", "oxygen", "2024", "livestock", "vaccine"]


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)


def synthetic_text(count: int, rng: SplitMix64, words=WORDS) -> str:
    return " ".join(words[rng.next() % len(words)] for _ in range(count))


def synthetic_rows(rows: int, negatives: int, seed: int = 7) -> list[dict]:
    """The rows `SyntheticData.write(rows:negatives:seed:)` writes, in its draw order."""
    rng = SplitMix64(seed)
    out = []
    for _ in range(rows):
        q = synthetic_text(14, rng)
        p = synthetic_text(108, rng)
        out.append({"query": q, "response": p, "rejected_response": [synthetic_text(108, rng) for _ in range(negatives)]})
    return out


def read_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def compare_rows(ours: list[dict], theirs: list[dict]) -> str | None:
    """None when identical (field by field; key order and JSON escaping do not matter)."""
    if len(ours) != len(theirs):
        return f"{len(ours)} rows here, {len(theirs)} there"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        for key in ("query", "response", "rejected_response"):
            if a[key] != b.get(key):
                return f"row {i} field {key!r} differs: {a[key]!r:.80} vs {b.get(key)!r:.80}"
    return None


# ---------------------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def emit(row: dict, path: str | None) -> None:
    text = json.dumps(row, sort_keys=True)
    print(text, flush=True)
    if path:
        with open(path, "w") as f:
            f.write(json.dumps(row, sort_keys=True, indent=2) + "\n")


def default_threads(ranks: int) -> int:
    # EmbedTune's policy: cores ÷ ranks per process (BLASRuntime; mpirun -x OPENBLAS_NUM_THREADS).
    return max(1, (os.cpu_count() or 1) // ranks)


def lora_targets(model_type: str) -> list[str]:
    """EmbedTune's default targets (`defaultTargetModules`). BERT's ["query","key","value","dense"]
    would also catch pooler.dense, which EmbedTune leaves out (it does not affect embeddings), so
    the dense layers are named by their parents here."""
    if model_type in ("bert", "roberta", "xlm-roberta", "mpnet"):
        return ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
    return ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_model(args, training: bool):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.model)
    config_kwargs = {}
    if training and args.dropout == "nodrop":
        # Every dropout probability of the backbone's config to 0 (hidden, attention, classifier...).
        config_kwargs = {k: 0.0 for k, v in config.to_dict().items()
                         if "dropout" in k and isinstance(v, float) and v > 0}
    model = SentenceTransformer(args.model, device="cpu", config_kwargs=config_kwargs)
    model.max_seq_length = args.max_length
    return model, config, config_kwargs


# ---------------------------------------------------------------------------------------------
# train

def train_worker(rank: int, args, result_queue=None) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    world = args.ranks
    if world > 1:
        import torch.distributed as dist
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(args.seed)

    from peft import LoraConfig, inject_adapter_in_model
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model, config, zeroed = load_model(args, training=True)
    targets = args.target_modules.split(",") if args.target_modules else lora_targets(config.model_type)
    lora_dropout = 0.0 if args.dropout == "nodrop" else 0.1
    # LoRA injected into the transformers backbone in place (what SentenceTransformer.add_adapter does;
    # transformers 5 refuses that path with peft < 0.22, so peft is called directly).
    inject_adapter_in_model(LoraConfig(r=8, lora_alpha=32, lora_dropout=lora_dropout, target_modules=targets, bias="none"),
                            model.transformers_model)
    for name, p in model.named_parameters():  # only the LoRA factors train
        p.requires_grad_("lora_" in name)
    trainable = [p for p in model.parameters() if p.requires_grad]
    live_dropouts = sorted({round(m.p, 3) for n, m in model.named_modules()
                            if isinstance(m, torch.nn.Dropout) and m.p > 0 and "lora_dropout" not in n})
    model.train()

    # MultipleNegativesRankingLoss: cosine × (1/τ), candidates = every positive and hard negative of
    # the (global) batch; with ranks > 1 embeddings are all-gathered with their gradients.
    loss_fn = MultipleNegativesRankingLoss(model, scale=1.0 / args.temperature, gather_across_devices=world > 1)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        loss_fn.model = DistributedDataParallel(model)

    total = args.warmup + args.steps
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    import math
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))

    global_batch = args.batch_size * world
    rows = read_rows(args.data) if args.data else synthetic_rows(global_batch * total, args.negatives)
    if len(rows) < global_batch * total:
        raise SystemExit(f"peer: {len(rows)} rows, {global_batch * total} needed")

    times, tokens_per_s, losses, tokens_per_step = [], [], [], []
    for step in range(total):
        start = step * global_batch + rank * args.batch_size
        batch = rows[start:start + args.batch_size]
        t0 = time.perf_counter()
        columns = [[r["query"] for r in batch], [r["response"] for r in batch]]
        columns += [[r["rejected_response"][j] for r in batch] for j in range(args.negatives)]
        features = [model.preprocess(c) for c in columns]
        loss = loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - t0
        tokens = torch.tensor([float(sum(int(f["attention_mask"].sum()) for f in features))])
        loss_value = loss.detach().clone()
        if world > 1:
            import torch.distributed as dist
            dist.all_reduce(tokens)
            dist.all_reduce(loss_value)
            loss_value /= world  # each rank's loss is its own rows' mean
        losses.append(float(loss_value))
        tokens_per_step.append(int(tokens))
        if step >= args.warmup:
            times.append(elapsed)
            tokens_per_s.append(float(tokens) / elapsed)

    rss = torch.tensor([peak_rss_mb()])
    rss_max = rss.clone()
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(rss_max, op=dist.ReduceOp.MAX)
        dist.barrier()
    s = statistics.median(times)
    import peft, sentence_transformers, transformers
    row = {
        "side": "peer", "model": os.path.basename(os.path.normpath(args.model)), "model_type": config.model_type,
        "ranks": world, "batch": global_batch, "negatives": args.negatives, "max_length": args.max_length,
        "threads": torch.get_num_threads(), "steps": args.steps, "warmup": args.warmup,
        "dropout": args.dropout, "lora_dropout": lora_dropout, "backbone_dropouts_zeroed": sorted(zeroed),
        "backbone_dropouts_live": live_dropouts, "lora_targets": targets,
        "lora_params": sum(p.numel() for p in trainable), "temperature": args.temperature,
        "s_per_step": s, "examples_per_s": global_batch / s, "tokens_per_s": statistics.median(tokens_per_s),
        "tokens_per_step": statistics.median(tokens_per_step), "tokens_steps": tokens_per_step, "step_times": times,
        "loss_first": losses[0], "loss_last": losses[-1], "losses": losses,
        "peak_rss_mb": float(rss[0]), "peak_rss_mb_max_rank": float(rss_max[0]),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "sentence_transformers": sentence_transformers.__version__},
    }
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    if rank == 0:
        if result_queue is not None:
            result_queue.put(row)
        return row
    return {}


def _spawned(rank, args, queue):
    train_worker(rank, args, queue)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(args) -> None:
    args.threads = args.threads or default_threads(args.ranks)
    if args.ranks == 1:
        row = train_worker(0, args)
    else:
        import torch.multiprocessing as mp
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(free_port())
        ctx = mp.get_context("spawn")
        queue = ctx.SimpleQueue()
        mp.spawn(_spawned, args=(args, queue), nprocs=args.ranks, join=True)
        row = queue.get()
    emit(row, args.json)


# ---------------------------------------------------------------------------------------------
# embed

def run_embed(args) -> None:
    import torch

    args.threads = args.threads or default_threads(1)
    torch.set_num_threads(args.threads)
    model, config, _ = load_model(args, training=False)
    rng = SplitMix64(11)
    texts = [synthetic_text(args.max_length * 2, rng, EMBED_WORDS) for _ in range(args.batch_size)]
    tokens = sum(int(m.sum()) for m in [model.preprocess(texts)["attention_mask"]])

    def once():
        t0 = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return time.perf_counter() - t0

    once()  # warm-up
    times = [once() for _ in range(args.repeats)]
    s = statistics.median(times)
    import sentence_transformers
    emit({
        "side": "peer", "model": os.path.basename(os.path.normpath(args.model)), "batch": args.batch_size,
        "max_length": args.max_length, "threads": torch.get_num_threads(), "median_s_per_batch": s,
        "texts_per_s": args.batch_size / s, "tokens_per_s": tokens / s, "tokens_per_batch": tokens,
        "times": times, "peak_rss_mb": peak_rss_mb(),
        "versions": {"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__},
    }, args.json)


# ---------------------------------------------------------------------------------------------
# data

def run_data(args) -> None:
    rows = synthetic_rows(args.rows, args.negatives)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if args.compare:
        problem = compare_rows(rows, read_rows(args.compare))
        print(json.dumps({"rows": len(rows), "negatives": args.negatives, "compared_with": args.compare,
                          "identical": problem is None, "problem": problem}))
        sys.exit(0 if problem is None else 1)
    if not args.out:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)

    t = sub.add_parser("train", help="LoRA contrastive training throughput and peak RSS")
    t.add_argument("--model", required=True)
    t.add_argument("--batch-size", type=int, default=16, help="per process (global = batch-size × ranks)")
    t.add_argument("--negatives", type=int, default=3)
    t.add_argument("--max-length", type=int, default=128)
    t.add_argument("--steps", type=int, default=5, help="timed steps")
    t.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    t.add_argument("--dropout", choices=["nodrop", "default"], default="nodrop",
                   help="nodrop: LoRA and backbone dropout 0; default: LoRA 0.1 and the backbone's own")
    t.add_argument("--ranks", type=int, default=1, help="processes (gloo DDP, embeddings all-gathered)")
    t.add_argument("--threads", type=int, default=0, help="torch threads per process (default cores ÷ ranks)")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--temperature", type=float, default=0.05, help="τ; the loss scale is 1/τ")
    t.add_argument("--target-modules", default="", help="comma-separated; default EmbedTune's")
    t.add_argument("--data", help="train on this JSONL (query/response/rejected_response) instead of generating it")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--json")

    e = sub.add_parser("embed", help="encoding throughput (SentenceTransformer.encode)")
    e.add_argument("--model", required=True)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--repeats", type=int, default=5, help="timed batches after one warm-up batch")
    e.add_argument("--threads", type=int, default=0)
    e.add_argument("--json")

    d = sub.add_parser("data", help="write / check the synthetic rows")
    d.add_argument("--rows", type=int, required=True)
    d.add_argument("--negatives", type=int, default=3)
    d.add_argument("--out")
    d.add_argument("--compare", help="a JSONL written by `embedtune bench train --write-data`")

    args = ap.parse_args()
    {"train": run_train, "embed": run_embed, "data": run_data}[args.mode](args)


if __name__ == "__main__":
    main()
