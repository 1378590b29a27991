#!/usr/bin/env python3
"""Build the reranker-training parity fixtures under Tests/Fixtures/training/reranker-*/ (dev time only).

One optimiser step's loss and gradients of a cross-encoder trained with LoRA and its classification
head trained whole (PEFT task_type SEQ_CLS: modules_to_save), for both reranker losses, on three
bases:

  reranker-bert/      Tests/Fixtures/cross-encoder/bert (BertForSequenceClassification): its head trains
                      further; LoRA on query, key, value, dense (so bert.pooler.dense carries LoRA)
  reranker-bert-new/  Tests/Fixtures/tiny-bert-zh (BertModel) with num_labels=1: a new classifier,
                      the checkpoint's pooler with LoRA
  reranker-xlmr-new/  Tests/Fixtures/tiny-xlmr (XLMRobertaModel) with num_labels=1: a new
                      classifier.dense + out_proj, both whole (PEFT leaves them without LoRA)

Each directory holds the adapter as `get_peft_model(...).save_pretrained` writes it (lora_A and
lora_B drawn U(-0.1, 0.1) so that gradients reach both; the head as transformers initialises it, or
the checkpoint's), batch.json (three queries, each with its positive and two negatives), and per
loss grads-<loss>.safetensors (PEFT's saved key names) with meta.json (loss values, logits):

  bce       BCEWithLogitsLoss over the 9 pairs, positives 1 and negatives 0 (sentence-transformers'
            BinaryCrossEntropyLoss, whose value on the same model is checked to agree)
  listwise  cross-entropy over each query's [positive, negative, negative] logits with target 0
            (FlagEmbedding's reranker loss), mean over the 3 queries

Every pass runs in eval mode (no dropout) over right-padded batches with attention masks.

Usage (from the repository root, with the venv of tools/reference/README.md):
    tools/reference/.venv/bin/python tools/reference/make_reranker_training_fixtures.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fixture_common  # noqa: E402  (first: offline Hugging Face settings)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from sentence_transformers.cross_encoder import CrossEncoder  # noqa: E402
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures"
OUT = FIXTURES / "training"
MAX_LENGTH = 64
TARGETS = ["query", "key", "value", "dense"]
BATCH = {
    "queries": ["how to control rice blast", "best time to plant maize", "对虾养殖的最佳水温"],
    "positives": ["spray tricyclazole at the booting stage", "plant after the last frost", "对虾生长的适宜水温为25到30摄氏度"],
    "negatives": [["feed tilapia twice a day", "prune apple trees in winter"],
                  ["rice needs standing water", "harvest tea in spring"],
                  ["水稻 需要 充足 的 水", "稻瘟病 用 三环唑"]],
}
CASES = [("reranker-bert", "cross-encoder/bert", 61), ("reranker-bert-new", "tiny-bert-zh", 62), ("reranker-xlmr-new", "tiny-xlmr", 63)]


def peft_model(base: Path, seed: int):
    """AutoModelForSequenceClassification (1 label, fp32, eval) + PEFT SEQ_CLS LoRA with A and B set
    to U(-0.1, 0.1) (torch.manual_seed(seed), named_parameters order); a new head keeps
    transformers' initialisation under the same seed."""
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.0,
                                             target_modules=TARGETS))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.uniform_(-0.1, 0.1)
    return model.eval()


def saved_key(param_name: str) -> str:
    """named_parameters() name -> PEFT's saved key (no adapter name, no modules_to_save wrapper)."""
    return param_name.replace(".modules_to_save.default.", ".").replace(".default.", ".")


def pairs() -> tuple[list[str], list[str]]:
    queries, documents = [], []
    for q, p, negs in zip(BATCH["queries"], BATCH["positives"], BATCH["negatives"]):
        for d in [p] + negs:
            queries.append(q)
            documents.append(d)
    return queries, documents


def loss_of(logits: torch.Tensor, kind: str) -> torch.Tensor:
    groups = logits.view(len(BATCH["queries"]), -1)
    if kind == "bce":
        labels = torch.zeros_like(groups)
        labels[:, 0] = 1
        return F.binary_cross_entropy_with_logits(groups.reshape(-1), labels.reshape(-1))
    return F.cross_entropy(groups, torch.zeros(groups.shape[0], dtype=torch.long))


def build(name: str, base_name: str, seed: int) -> None:
    base, out = FIXTURES / base_name, OUT / name
    if out.exists():
        shutil.rmtree(out)
    model = peft_model(base, seed)
    model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = f"Tests/Fixtures/{base_name}"
    config["target_modules"] = sorted(config["target_modules"])  # a set in peft: its order varies by run
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    keys = sorted(load_file(str(out / "adapter_model.safetensors")).keys())
    (out / "batch.json").write_text(json.dumps(BATCH, ensure_ascii=False, indent=2) + "\n")

    tok = AutoTokenizer.from_pretrained(str(base))
    queries, documents = pairs()
    batch = tok(queries, documents, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    assert int(batch["attention_mask"].sum(1).max()) < MAX_LENGTH, "no pair should be truncated"
    meta = {"base": f"Tests/Fixtures/{base_name}", "max_length": MAX_LENGTH, "adapter_keys": keys, "losses": {}}
    for kind in ["bce", "listwise"]:
        model.zero_grad()
        logits = model(**batch).logits
        loss = loss_of(logits, kind)
        loss.backward()
        grads = {}
        for pname, p in model.named_parameters():
            if p.requires_grad:
                # The listwise loss is invariant to a shift of a group's logits: the output bias's
                # gradient is zero up to rounding.
                shift_invariant = kind == "listwise" and pname.endswith(("classifier.modules_to_save.default.bias", "out_proj.bias"))
                assert p.grad is not None and (shift_invariant or p.grad.abs().max() > 0), pname
                grads[saved_key(pname)] = p.grad.detach().clone().contiguous()
        assert sorted(grads) == keys, (sorted(grads), keys)
        save_file(grads, str(out / f"grads-{kind}.safetensors"))
        # The same step in float64, to size the float32 error of the reference itself.
        m64 = model.double()
        m64.zero_grad()
        loss_of(m64(**batch).logits, kind).backward()
        # Relative to each tensor's norm, floored at 1e-3 of the largest (for the zero bias gradient).
        floor = 1e-3 * max(p.grad.norm().item() for p in m64.parameters() if p.requires_grad)
        rel = max(((grads[saved_key(n)].double() - p.grad).norm() / max(p.grad.norm().item(), floor)).item()
                  for n, p in m64.named_parameters() if p.requires_grad)
        model.float()
        assert rel < 1e-3, rel
        meta["losses"][kind] = {"loss": loss.item(), "logits": logits.view(-1).tolist(), "grads_rel_vs_float64": rel}
        print(f"  {name} {kind}: loss {loss.item():.6f}, {len(grads)} gradient tensors, float32 vs float64 {rel:.1e}")
    # sentence-transformers' BinaryCrossEntropyLoss on the same adapter gives the bce value.
    ce = CrossEncoder(str(base), num_labels=1, max_length=MAX_LENGTH, model_kwargs={"dtype": torch.float32})
    ce.model.load_adapter(str(out))
    ce.eval()
    labels = torch.tensor([1.0 if i % 3 == 0 else 0.0 for i in range(len(queries))])
    with torch.no_grad():
        st = BinaryCrossEntropyLoss(ce)([queries, documents], labels).item()
    assert abs(st - meta["losses"]["bce"]["loss"]) < 1e-5, (st, meta["losses"]["bce"]["loss"])
    meta["sentence_transformers_bce"] = st
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n")


def main() -> int:
    torch.set_num_threads(1)
    for name, base, seed in CASES:
        build(name, base, seed)
    total = sum(fixture_common.list_written(OUT / name, FIXTURES, limit=400_000) for name, _, _ in CASES)
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
