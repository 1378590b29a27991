#!/usr/bin/env python3
"""EmbedTune vs the Python peer, back to back on one workload (stdlib only).

    compare.py train --model DIR [--batch-size 16 --negatives 3 --max-length 128 --steps 5
                     --dropout nodrop|default --ranks 1] [--check-loss] [--rounds R] [--json FILE]
    compare.py embed --model DIR [--batch-size 64 --max-length 128 --repeats 5] [--rounds R] [--json FILE]

Runs `embedtune bench train|embed … --json` (the release binary), then `peer.py train|embed` for
the same workload, and prints both sides with the ratios EmbedTune ÷ peer. With --rounds R both
sides run R times, alternating, and the headline ratio is the median of the R paired ratios (the
peer's own speed moves by ±15% between runs on a shared machine). For `train` it first
checks that both sides generate the same synthetic texts (`bench train --write-data` against
`peer.py data --compare`); --check-loss also compares the step-1 loss on one shared batch.
See bench/peer/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(HERE, "peer.py")


def default_python() -> str:
    for candidate in (os.environ.get("PEER_PYTHON"), os.path.join(HERE, ".venv/bin/python"),
                      os.path.join(ROOT, "tools/reference/.venv/bin/python")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def run(cmd: list[str], quiet_stderr: bool = True) -> str:
    print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr, flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE if quiet_stderr else None, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:] + (p.stderr or "")[-4000:])
        raise SystemExit(f"compare: command failed with status {p.returncode}: {cmd[0]} {' '.join(cmd[1:3])}")
    return p.stdout


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise SystemExit("compare: the peer printed no JSON line")


def embedtune_row(cmd: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.json")
        run(cmd + ["--json", path])
        with open(path) as f:
            doc = json.load(f)
    row = doc["results"][0]
    row["blas_core"] = doc.get("blas_core")
    row["kernels"] = doc.get("kernels", "openblas")
    return row


def model_name(path: str) -> str:
    parts = os.path.normpath(path).split(os.sep)
    return parts[-2] if parts[-1] == "model" and len(parts) > 1 else parts[-1]


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"
    return "" if v is None else str(v)


def table(title: str, rows: list[tuple[str, object, object, object]]) -> None:
    header = ("metric", "embedtune", "peer", "embedtune/peer")
    cells = [header] + [(m, fmt(a), fmt(b), fmt(r)) for m, a, b, r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    print(f"\n{title}")
    for i, c in enumerate(cells):
        print("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def median_side(rows: list[dict]) -> dict:
    """One side over several rounds: the median of every numeric field, the rest from round 1."""
    out = dict(rows[0])
    for k, v in rows[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = statistics.median(r[k] for r in rows)
    return out


def paired_rounds(rounds: int, measure_ours, measure_peer) -> tuple[dict, dict, list[tuple[dict, dict]]]:
    """Both sides measured `rounds` times, alternating, so slow phases of a noisy machine hit both."""
    pairs = [(measure_ours(), measure_peer()) for _ in range(rounds)]
    return median_side([a for a, _ in pairs]), median_side([b for _, b in pairs]), pairs


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def check_data(args, python: str) -> bool | None:
    """Same texts on both sides? None when the binary predates --write-data."""
    rows = args.batch_size * args.ranks * (args.steps + 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "swift.jsonl")
        p = subprocess.run([args.embedtune, "bench", "train", "--model", args.model, "--num_negatives", str(args.negatives),
                            "--write_data", path, "--rows", str(rows)], capture_output=True, text=True)
        if p.returncode != 0 or not os.path.exists(path):
            print("compare: this embedtune has no `bench train --write-data`; texts not checked", file=sys.stderr)
            return None
        out = run([python, PEER, "data", "--rows", str(rows), "--negatives", str(args.negatives), "--compare", path])
    return json.loads(out)["identical"]


def check_loss(args, python: str, lora_dropout: float) -> dict:
    """Step-1 loss of both sides on the same single batch (the LoRA B factors start at zero, so
    this is the base model's MultipleNegativesRankingLoss; the row order does not matter)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "batch.jsonl")
        run([python, PEER, "data", "--rows", str(args.batch_size), "--negatives", str(args.negatives), "--out", data])
        run([args.embedtune, "train", "--model", args.model, "--dataset", data, "--output_dir", os.path.join(tmp, "out"),
             "--max_steps", "1", "--per_device_train_batch_size", str(args.batch_size),
             "--num_negatives", str(args.negatives), "--max_length", str(args.max_length),
             "--lora_dropout", str(lora_dropout), "--query_prompt", "", "--document_prompt", ""])
        with open(os.path.join(tmp, "out", "train_log.jsonl")) as f:
            ours = [json.loads(l) for l in f if l.strip() and '"loss"' in l][0]["loss"]
        peer = last_json_line(run([python, PEER, "train", "--model", args.model, "--batch-size", str(args.batch_size),
                                   "--negatives", str(args.negatives), "--max-length", str(args.max_length),
                                   "--dropout", args.dropout, "--data", data, "--warmup", "0", "--steps", "1"]))
    theirs = peer["loss_first"]
    return {"embedtune": ours, "peer": theirs, "relative_difference": abs(ours - theirs) / max(abs(theirs), 1e-12)}


def compare_train(args, python: str) -> dict:
    lora_dropout = 0.0 if args.dropout == "nodrop" else 0.1
    identical = None if args.no_data_check else check_data(args, python)
    if identical is False:
        raise SystemExit("compare: EmbedTune and peer.py generate different synthetic texts")
    loss = check_loss(args, python, lora_dropout) if args.check_loss else None
    common = ["--model", args.model, "--batch-size", str(args.batch_size), "--negatives", str(args.negatives),
              "--max-length", str(args.max_length), "--steps", str(args.steps)]
    et_cmd = ([args.embedtune, "bench", "train"] + common
              + ["--lora-dropout", str(lora_dropout), "--ranks", str(args.ranks)]
              + (["--backbone-dropout"] if args.dropout == "default" else []))
    peer_cmd = [python, PEER, "train"] + common + ["--warmup", "2", "--dropout", args.dropout, "--ranks", str(args.ranks)]
    if args.threads:
        peer_cmd += ["--threads", str(args.threads)]
    et, peer, pairs = paired_rounds(args.rounds, lambda: embedtune_row(et_cmd), lambda: last_json_line(run(peer_cmd)))
    round_ratios = [ratio(a["examples_per_s"], b["examples_per_s"]) for a, b in pairs]
    ratios = {"examples_per_s": statistics.median(round_ratios),
              "s_per_step": ratio(et["s_per_step"], peer["s_per_step"]),
              "tokens_per_s": ratio(et["tokens_per_s"], peer["tokens_per_s"]),
              "peak_rss_mb": ratio(et["peak_rss_mb"], peer["peak_rss_mb"])}
    title = (f"train  {model_name(args.model)}  global batch {et['batch']}  "
             f"{args.negatives} hard negatives  max_length {args.max_length}  ranks {args.ranks}  "
             f"dropout {args.dropout}  {args.steps} timed steps after 2 warm-up  (BLAS {et.get('blas_core')}, kernels {et.get('kernels')})")
    table(title, [
        ("threads/process", et.get("threads"), peer.get("threads"), None),
        ("s_per_step", et["s_per_step"], peer["s_per_step"], ratios["s_per_step"]),
        ("examples_per_s", et["examples_per_s"], peer["examples_per_s"], ratios["examples_per_s"]),
        ("tokens_per_s", et["tokens_per_s"], peer["tokens_per_s"], ratios["tokens_per_s"]),
        ("peak_rss_mb", et["peak_rss_mb"], peer["peak_rss_mb"], ratios["peak_rss_mb"]),
    ])
    print(f"speed-up (examples/s, EmbedTune ÷ peer): {fmt(ratios['examples_per_s'])}×   "
          f"RSS ratio (EmbedTune ÷ peer): {fmt(ratios['peak_rss_mb'])}"
          + (f"   (median of {len(pairs)} alternating rounds: {', '.join(fmt(r) for r in round_ratios)})" if len(pairs) > 1 else ""))
    print(f"texts identical: {'yes' if identical else 'not checked' if identical is None else 'NO'}"
          + (f"   step-1 loss: embedtune {loss['embedtune']:.6f}  peer {loss['peer']:.6f}" if loss else ""))
    if loss and args.dropout == "default":
        print("note: with dropout the two step-1 losses draw different masks; the check is exact only with nodrop")
    if args.dropout == "default":
        print(f"note: both sides train with LoRA dropout 0.1 and the backbone's own dropout "
              f"(peer: {peer.get('backbone_dropouts_live')}; EmbedTune: --backbone-dropout)")
    workload = {k: getattr(args, k) for k in ("model", "batch_size", "negatives", "max_length", "steps", "dropout", "ranks")}
    return {"benchmark": "peer train", "workload": workload, "embedtune": et, "peer": peer, "ratios": ratios,
            "round_ratios": round_ratios, "rounds": [{"embedtune": a, "peer": b} for a, b in pairs],
            "texts_identical": identical, "loss_check": loss}


def compare_embed(args, python: str) -> dict:
    common = ["--model", args.model, "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
              "--repeats", str(args.repeats)]
    peer_cmd = [python, PEER, "embed"] + common + (["--threads", str(args.threads)] if args.threads else [])
    et, peer, pairs = paired_rounds(args.rounds, lambda: embedtune_row([args.embedtune, "bench", "embed"] + common),
                                    lambda: last_json_line(run(peer_cmd)))
    round_ratios = [ratio(a["texts_per_s"], b["texts_per_s"]) for a, b in pairs]
    ratios = {"texts_per_s": statistics.median(round_ratios),
              "tokens_per_s": ratio(et["tokens_per_s"], peer["tokens_per_s"])}
    table(f"embed  {model_name(args.model)}  batch {args.batch_size}  max_length {args.max_length}  "
          f"median of {args.repeats} after 1 warm-up  (BLAS {et.get('blas_core')}, kernels {et.get('kernels')})", [
        ("threads", et.get("threads"), peer.get("threads"), None),
        ("s_per_batch", et["median_s_per_batch"], peer["median_s_per_batch"],
         ratio(et["median_s_per_batch"], peer["median_s_per_batch"])),
        ("texts_per_s", et["texts_per_s"], peer["texts_per_s"], ratios["texts_per_s"]),
        ("tokens_per_s", et["tokens_per_s"], peer["tokens_per_s"], ratios["tokens_per_s"]),
    ])
    print(f"speed-up (texts/s, EmbedTune ÷ peer): {fmt(ratios['texts_per_s'])}×"
          + (f"   (median of {len(pairs)} alternating rounds: {', '.join(fmt(r) for r in round_ratios)})" if len(pairs) > 1 else ""))
    workload = {k: getattr(args, k) for k in ("model", "batch_size", "max_length", "repeats")}
    return {"benchmark": "peer embed", "workload": workload, "embedtune": et, "peer": peer, "ratios": ratios,
            "round_ratios": round_ratios, "rounds": [{"embedtune": a, "peer": b} for a, b in pairs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("train", "embed"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--max-length", type=int, default=128)
        p.add_argument("--threads", type=int, default=0, help="peer threads per process (default cores ÷ ranks, as EmbedTune)")
        p.add_argument("--embedtune", default=os.path.join(ROOT, ".build/release/embedtune"))
        p.add_argument("--python", default=default_python(), help="interpreter with torch, peft, sentence-transformers")
        p.add_argument("--json", help="write both rows and the ratios here")
        p.add_argument("--rounds", type=int, default=1,
                       help="measure both sides this many times, alternating; report medians and the median ratio")
        if name == "train":
            p.add_argument("--batch-size", type=int, default=16, help="per rank")
            p.add_argument("--negatives", type=int, default=3)
            p.add_argument("--steps", type=int, default=5, help="timed steps (both sides warm up 2)")
            p.add_argument("--dropout", choices=["nodrop", "default"], default="nodrop")
            p.add_argument("--ranks", type=int, default=1)
            p.add_argument("--check-loss", action="store_true", help="also compare the step-1 loss on one shared batch")
            p.add_argument("--no-data-check", action="store_true")
        else:
            p.add_argument("--batch-size", type=int, default=64)
            p.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not os.access(args.embedtune, os.X_OK):
        raise SystemExit(f"compare: {args.embedtune} not found (make build)")
    result = compare_train(args, args.python) if args.mode == "train" else compare_embed(args, args.python)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
