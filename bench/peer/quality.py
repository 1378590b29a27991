#!/usr/bin/env python3
"""The Python peer of an `embedtune train` + `embedtune eval` quality run: LoRA trained with
sentence-transformers' own trainer and loss on the same mined triples, then NDCG@10 of the held-out
questions over the whole corpus with its InformationRetrievalEvaluator.

    quality.py --model DIR --train TRIPLETS.jsonl --beir DIR [--steps 24 --warmup-steps 3
               --lr 5e-4 --batch-size 32 --negatives 5 --max-length 128 --temperature 0.05
               --lora-dropout 0 --dropout default|nodrop --batch-sampler no_duplicates|batch_sampler
               --mini-batch 0 --seed 42 --threads N --json FILE]

TRIPLETS.jsonl is `embedtune data export --format triplets` (anchor, positive, negative_1…);
DIR is `embedtune data export --format beir --db_split test` (corpus.jsonl, queries.jsonl,
qrels/test.tsv). `--steps 0` evaluates the base model. One JSON object goes to stdout (and to
--json FILE). See bench/peer/README.md, "Quality at equal steps".
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time

from peer import emit, lora_targets, read_rows


def read_beir(directory: str, split: str) -> tuple[dict, dict, dict]:
    corpus = {r["_id"]: r["text"] for r in read_rows(os.path.join(directory, "corpus.jsonl"))}
    queries = {r["_id"]: r["text"] for r in read_rows(os.path.join(directory, "queries.jsonl"))}
    relevant: dict[str, set[str]] = {}
    with open(os.path.join(directory, "qrels", f"{split}.tsv"), encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if float(row["score"]) > 0:
                relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
    queries = {q: t for q, t in queries.items() if q in relevant}
    return corpus, queries, relevant


def training_dataset(path: str, negatives: int):
    """The triples as sentence-transformers columns: anchor, positive, negative_1 … negative_K."""
    from datasets import Dataset

    rows = read_rows(path)
    columns = ["anchor", "positive"] + [f"negative_{j + 1}" for j in range(negatives)]
    short = [i for i, r in enumerate(rows) if any(c not in r for c in columns)]
    if short:
        raise SystemExit(f"quality: {path} row {short[0] + 1} has fewer than {negatives} negatives ({len(short)} such rows)")
    return Dataset.from_dict({c: [r[c] for r in rows] for c in columns}), columns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", help="triplets JSONL (needed unless --steps 0)")
    ap.add_argument("--beir", required=True, help="BEIR directory of the evaluation split")
    ap.add_argument("--split", default="test", help="qrels/<split>.tsv")
    ap.add_argument("--steps", type=int, default=24, help="optimiser steps (max_steps); 0 = evaluate the base model")
    ap.add_argument("--warmup-steps", type=int, default=0)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--scheduler", default="cosine")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=5)
    ap.add_argument("--max-length", type=int, default=128, help="training max_seq_length (evaluation keeps the model's)")
    ap.add_argument("--temperature", type=float, default=0.05, help="τ; MultipleNegativesRankingLoss scale = 1/τ")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=32)
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--dropout", choices=["default", "nodrop"], default="default",
                    help="default: the backbone's own dropout in train mode; nodrop: every backbone dropout 0")
    ap.add_argument("--batch-sampler", choices=["no_duplicates", "batch_sampler"], default="no_duplicates")
    ap.add_argument("--resample-passes", type=int, default=2,
                    help="no_duplicates: passes over fresh shuffles after the first while an epoch is short of batches "
                         "(sentence-transformers' _MAX_RESAMPLE_PASSES, 2; EmbedTune's no_duplicates_resample_passes)")
    ap.add_argument("--drop-last", type=int, default=1)
    ap.add_argument("--mini-batch", type=int, default=0,
                    help="> 0: CachedMultipleNegativesRankingLoss with this mini-batch (same gradient, bounded memory)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: every core)")
    ap.add_argument("--json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    from peft import LoraConfig, inject_adapter_in_model
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(args.model)
    zeroed = {}
    if args.dropout == "nodrop":
        zeroed = {k: 0.0 for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float) and v > 0}
    model = SentenceTransformer(args.model, device="cpu", config_kwargs=zeroed)
    eval_length = model.max_seq_length
    prompts = getattr(model, "prompts", None) or {}
    query_prompt, document_prompt = prompts.get("query", ""), prompts.get("document", "")

    row = {"side": "peer", "model": os.path.basename(os.path.normpath(args.model)), "seed": args.seed,
           "steps": args.steps, "query_prompt": query_prompt, "document_prompt": document_prompt}
    if args.steps > 0:
        from sentence_transformers.sentence_transformer import losses
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

        import sentence_transformers.base.sampler as sampler_module

        # Read by NoDuplicatesBatchSampler.__iter__ at each epoch.
        sampler_module._MAX_RESAMPLE_PASSES = args.resample_passes
        dataset, columns = training_dataset(args.train, args.negatives)
        targets = lora_targets(config.model_type)
        torch.manual_seed(args.seed)  # LoRA A's initialisation
        inject_adapter_in_model(LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                                           target_modules=targets, bias="none"), model.transformers_model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        model.max_seq_length = args.max_length
        live = sorted({round(m.p, 3) for n, m in model.named_modules()
                       if isinstance(m, torch.nn.Dropout) and m.p > 0 and "lora_dropout" not in n})
        column_prompts = {c: (query_prompt if c == "anchor" else document_prompt) for c in columns}
        with tempfile.TemporaryDirectory() as out:
            training_args = SentenceTransformerTrainingArguments(
                output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                learning_rate=args.lr, warmup_steps=args.warmup_steps, lr_scheduler_type=args.scheduler,
                weight_decay=0.0, max_grad_norm=1.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                optim="adamw_torch", seed=args.seed, batch_sampler=args.batch_sampler,
                dataloader_drop_last=bool(args.drop_last), save_strategy="no", eval_strategy="no",
                logging_steps=1, report_to="none", use_cpu=True, disable_tqdm=True,
                prompts=column_prompts if (query_prompt or document_prompt) else None)
            if args.mini_batch:
                # GradCache: the same loss and gradient (dropout replayed by RandContext), activations
                # for mini_batch texts at a time instead of the batch's 32 × 7.
                loss = losses.CachedMultipleNegativesRankingLoss(model, scale=1.0 / args.temperature,
                                                                 mini_batch_size=args.mini_batch)
            else:
                loss = losses.MultipleNegativesRankingLoss(model, scale=1.0 / args.temperature)
            trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=dataset, loss=loss)
            t0 = time.perf_counter()
            trainer.train()
            row["train_s"] = time.perf_counter() - t0
            row["steps_run"] = trainer.state.global_step
            if trainer.state.global_step != args.steps:
                # NoDuplicatesBatchSampler yields fewer batches than an epoch advertises when the rows
                # share too many texts; the trainer then ends early, and the run is not at equal steps.
                raise SystemExit(f"quality: the trainer ran {trainer.state.global_step} of {args.steps} steps "
                                 f"(batch sampler {args.batch_sampler} could not fill its epochs)")
            row["losses"] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
            row["learning_rates"] = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
        row.update({"rows": len(dataset), "batch": args.batch_size, "negatives": args.negatives, "lr": args.lr,
                    "warmup_steps": args.warmup_steps, "scheduler": args.scheduler, "temperature": args.temperature,
                    "lora_dropout": args.lora_dropout, "backbone_dropouts_live": live, "batch_sampler": args.batch_sampler,
                    "resample_passes": args.resample_passes,
                    "loss": "CachedMultipleNegativesRankingLoss" if args.mini_batch else "MultipleNegativesRankingLoss",
                    "mini_batch": args.mini_batch,
                    "lora_targets": targets, "lora_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
                    "train_max_length": args.max_length})

    model.max_seq_length = eval_length
    corpus, queries, relevant = read_beir(args.beir, args.split)
    evaluator = InformationRetrievalEvaluator(
        queries=queries, corpus=corpus, relevant_docs=relevant, name=args.split, query_prompt=query_prompt or None,
        corpus_prompt=document_prompt or None, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1, 5, 10],
        precision_recall_at_k=[5, 10], map_at_k=[100], batch_size=32, show_progress_bar=False)
    t0 = time.perf_counter()
    metrics = evaluator(model)
    row["eval_s"] = time.perf_counter() - t0
    row["metrics"] = {k.removeprefix(f"{args.split}_"): float(v) for k, v in metrics.items()}
    row["ndcg@10"] = next(v for k, v in row["metrics"].items() if k.endswith("ndcg@10"))
    row["eval_max_length"], row["queries"], row["documents"] = eval_length, len(queries), len(corpus)
    import peft, sentence_transformers, transformers
    row["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                       "sentence_transformers": sentence_transformers.__version__}
    emit(row, args.json)


if __name__ == "__main__":
    main()
