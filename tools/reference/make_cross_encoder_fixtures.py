#!/usr/bin/env python3
"""Build the cross-encoder parity fixtures under Tests/Fixtures/cross-encoder/ (dev time only).

Four tiny random `*ForSequenceClassification` models in the sentence-transformers CrossEncoder
layout (saved by CrossEncoder.save_pretrained), on the tiny tokenizers of Tests/Fixtures:

  bert/          BertForSequenceClassification, 1 label   (tiny-bert-zh WordPiece tokenizer)
  bert-3/        BertForSequenceClassification, 3 labels
  xlmr/          XLMRobertaForSequenceClassification, 1 label (tiny-xlmr Unigram tokenizer)
  xlmr-2/        XLMRobertaForSequenceClassification, 2 labels

and two PEFT LoRA adapters trained nowhere (random, B non-zero) with task_type SEQ_CLS, as
`get_peft_model(...).save_pretrained` writes them: the LoRA pairs plus the classification head
in full (modules_to_save):

  bert-adapter/  on bert/, target query, key, value, dense (so bert.pooler.dense carries LoRA)
  xlmr-adapter/  on xlmr/, target query, value (the head classifier.dense/out_proj saved whole)

Weights are stored as bf16 (small files) and evaluated in fp32, as EmbedTune widens bf16 when
loading. Every model truncates at max_seq_length 56 so that several pairs need truncation
(transformers' truncation=True, i.e. longest_first). expected.json holds per model and pair the
token ids, token type ids, the logits (one row per pair) and CrossEncoder.predict's scores:
sigmoid for one label, softmax (apply_softmax=True) for several.

Usage (from the repository root, with the venv of tools/reference/README.md):
    tools/reference/.venv/bin/python tools/reference/make_cross_encoder_fixtures.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fixture_common  # noqa: E402  (first: offline Hugging Face settings)
import torch  # noqa: E402
import transformers  # noqa: E402
import sentence_transformers  # noqa: E402
import peft  # noqa: E402
from peft import LoraConfig, PeftModel, TaskType, get_peft_model  # noqa: E402
from sentence_transformers import CrossEncoder  # noqa: E402
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig,  # noqa: E402
                          BertForSequenceClassification, XLMRobertaConfig, XLMRobertaForSequenceClassification)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures"
OUT = FIXTURES / "cross-encoder"
MAX_LENGTH = 56

# (query, document): short pairs, then pairs whose token count passes MAX_LENGTH: a long
# document, a long query, both long, and lengths that leave an odd budget.
PAIRS = [
    ("what is the capital of china", "the capital of china is beijing"),
    ("how to control rice blast", "spray tricyclazole at the booting stage and drain the paddy"),
    ("对虾养殖的最佳水温", "对虾生长的适宜水温为25到30摄氏度"),
    ("best time to plant maize", "plant after the last frost"),
    ("why do fish need oxygen",
     " ".join(["tilapia carp and catfish grow well in warm ponds but shrimp need clean water"] * 4)),
    (" ".join(["how much feed should a farmer give to young tilapia in a cold pond"] * 4), "feed twice a day"),
    (" ".join(["what is the best fertiliser for rice"] * 5), " ".join(["urea and potash split in three doses"] * 5)),
    ("水稻 " * 25, "稻瘟病 用 三环唑 " * 9),
]

MODELS = [("bert", "bert", "tiny-bert-zh", 1), ("bert-3", "bert", "tiny-bert-zh", 3),
          ("xlmr", "xlmr", "tiny-xlmr", 1), ("xlmr-2", "xlmr", "tiny-xlmr", 2)]
ADAPTERS = [("bert-adapter", "bert", ["query", "key", "value", "dense"]), ("xlmr-adapter", "xlmr", ["query", "value"])]
TRUNCATION_LENGTHS = [7, 8, 21, 30, 31, 64]
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]


def base_config(family: str, num_labels: int):
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  hidden_act="gelu", num_labels=num_labels)
    if family == "bert":
        return BertConfig(vocab_size=1500, max_position_embeddings=128, type_vocab_size=2, pad_token_id=0,
                          layer_norm_eps=1e-12, **common)
    return XLMRobertaConfig(vocab_size=802, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                            bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5, **common)


def randomize(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            # LayerNorm weights near 1, larger weights elsewhere, so that the logits spread out.
            p.copy_(1.0 + 0.1 * noise if "LayerNorm.weight" in name else 0.2 * noise)


def build(name: str, family: str, tokenizer_dir: str, num_labels: int, seed: int) -> Path:
    torch.manual_seed(seed)
    cls = BertForSequenceClassification if family == "bert" else XLMRobertaForSequenceClassification
    model = cls(base_config(family, num_labels))
    randomize(model, seed)
    raw = OUT / (name + ".raw")
    model.to(torch.bfloat16).save_pretrained(str(raw), safe_serialization=True)
    for f in TOKENIZER_FILES:
        if (FIXTURES / tokenizer_dir / f).exists():
            shutil.copy(FIXTURES / tokenizer_dir / f, raw / f)
    # The sentence-transformers layout: CrossEncoder.save_pretrained over the raw directory.
    ce = CrossEncoder(str(raw), max_length=MAX_LENGTH, model_kwargs={"dtype": torch.bfloat16})
    out = OUT / name
    ce.save_pretrained(str(out))
    shutil.rmtree(raw)
    (out / "README.md").unlink()
    return out


def expected_for(directory: Path, adapter: Path | None = None) -> dict:
    """CrossEncoder.predict in fp32 (with the adapter when given), plus the raw logits."""
    ce = CrossEncoder(str(directory), model_kwargs={"dtype": torch.float32})
    assert ce.max_seq_length == MAX_LENGTH, ce.max_seq_length
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    hf = AutoModelForSequenceClassification.from_pretrained(str(directory), dtype=torch.float32).eval()
    if adapter is not None:
        ce.model.load_adapter(str(adapter))
        hf = PeftModel.from_pretrained(hf, str(adapter)).eval()
    num_labels = hf.config.num_labels
    encoded = tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], truncation=True, max_length=MAX_LENGTH)
    ids = encoded["input_ids"]
    types = encoded.get("token_type_ids") or [[0] * len(s) for s in ids]
    assert any(len(s) == MAX_LENGTH for s in ids) and any(len(s) < MAX_LENGTH for s in ids)
    with torch.no_grad():
        logits = []
        for s, t in zip(ids, types):  # one pair at a time: no padding, what packed sequences compute
            kwargs = {"input_ids": torch.tensor([s])}
            if "token_type_ids" in encoded:
                kwargs["token_type_ids"] = torch.tensor([t])
            logits.append(hf(**kwargs).logits[0].tolist())
    scores = ce.predict(PAIRS, apply_softmax=num_labels > 1, batch_size=3)
    probs = torch.tensor(logits)
    probs = torch.sigmoid(probs[:, 0]) if num_labels == 1 else torch.softmax(probs, dim=1)
    assert torch.allclose(torch.tensor(scores), probs, atol=1e-5), (scores, probs)
    return {"num_labels": num_labels, "ids": ids, "token_type_ids": types, "logits": logits,
            "scores": scores.tolist(), "returns_token_type_ids": "token_type_ids" in encoded}


def make_adapter(name: str, base: Path, targets: list[str], seed: int) -> Path:
    model = AutoModelForSequenceClassification.from_pretrained(str(base), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, lora_dropout=0.0,
                                                  target_modules=targets))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_" in n or "modules_to_save" in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=torch.float32))
    out = OUT / name
    peft_model.save_pretrained(str(out))
    (out / "README.md").unlink(missing_ok=True)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base.name
    config["target_modules"] = sorted(config["target_modules"])  # a set in peft: its order varies by run
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    torch.set_num_threads(1)
    expected = {"max_length": MAX_LENGTH, "pairs": [{"query": q, "document": d} for q, d in PAIRS], "models": {}}
    dirs = {}
    for seed, (name, family, tokenizer_dir, labels) in enumerate(MODELS, start=31):
        dirs[name] = build(name, family, tokenizer_dir, labels, seed)
        expected["models"][name] = expected_for(dirs[name])
        e = expected["models"][name]
        print(f"{name}: lengths {[len(s) for s in e['ids']]}, scores {[round(float(s) if labels == 1 else s[-1], 4) for s in e['scores']]}")
    # longest_first truncation alone, at budgets odd and even, for pairs with a long first, a long
    # second or two long texts.
    expected["truncation"] = {}
    for tokenizer_dir in ["tiny-bert-zh", "tiny-xlmr"]:
        tokenizer = AutoTokenizer.from_pretrained(str(FIXTURES / tokenizer_dir))
        rows = []
        for k in [1, 4, 5, 6, 7]:
            q, d = PAIRS[k]
            for max_length in TRUNCATION_LENGTHS:
                rows.append({"pair": k, "max_length": max_length,
                             "ids": tokenizer(q, d, truncation=True, max_length=max_length)["input_ids"]})
        expected["truncation"][tokenizer_dir] = rows
    for seed, (name, base, targets) in enumerate(ADAPTERS, start=51):
        path = make_adapter(name, dirs[base], targets, seed)
        e = expected_for(dirs[base], adapter=path)
        e["base"] = base
        expected["models"][name] = e
        print(f"{name} on {base}: scores {[round(float(s), 4) for s in e['scores']]}")
    (OUT / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, separators=(",", ":")) + "\n")
    total = fixture_common.list_written(OUT, FIXTURES, limit=1_500_000)
    print(f"total {total} bytes; transformers {transformers.__version__}, sentence-transformers "
          f"{sentence_transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
