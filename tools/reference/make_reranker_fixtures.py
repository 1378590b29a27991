#!/usr/bin/env python3
"""Build the Qwen3-Reranker parity fixtures under Tests/Fixtures/reranker/ (dev time only).

Four tiny random causal LMs share the tiny Qwen vocabulary of Tests/Fixtures/tiny-qwen3
(its tokenizer files are copied in):

  qwen3-tied/    Qwen3ForCausalLM, tie_word_embeddings=true  (no lm_head.weight in the file)
  qwen3-untied/  Qwen3ForCausalLM, tie_word_embeddings=false (lm_head.weight stored)
  qwen2-tied/    Qwen2ForCausalLM, tied
  qwen2-untied/  Qwen2ForCausalLM, untied

Weights are stored as bf16 (to keep the fixtures small) and every model is evaluated in fp32,
as EmbedTune widens bf16 to fp32 when loading. expected.json holds, per model and pair, the
token ids, the last position's logits of the two answer tokens and the score, computed exactly
as the Qwen3-Reranker model card does (prefix / body / suffix, body-only truncation, left
padding, logits[:, -1, :], log_softmax over [no, yes]).

The tiny vocabulary has no "yes" or "no" token, so the fixtures use "y" and "n", looked up by
the same rule (tokenizer.convert_tokens_to_ids); real Qwen vocabularies give yes 9693, no 2152.

Usage (from the repository root, with the venv of tools/reference/README.md):
    tools/reference/.venv/bin/python tools/reference/make_reranker_fixtures.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fixture_common  # noqa: E402  (first: offline Hugging Face settings)
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures"
TOKENIZER_DIR = FIXTURES / "tiny-qwen3"
OUT = FIXTURES / "reranker"

YES_TOKEN, NO_TOKEN = "y", "n"
MAX_LENGTH = 320

# Verbatim from the Qwen3-Reranker model card.
PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
          "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def format_instruction(instruction, query, doc):
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    return "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(
        instruction=instruction, query=query, doc=doc)


def model_card_ids(tokenizer, pairs, max_length):
    """The model card's input ids for (instruction, query, document) pairs: prefix + body + suffix,
    only the body truncated; with the prefix and suffix ids."""
    prefix_tokens = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(SUFFIX, add_special_tokens=False)
    inputs = tokenizer([format_instruction(i, q, d) for i, q, d in pairs], padding=False, truncation="longest_first",
                       return_attention_mask=False, max_length=max_length - len(prefix_tokens) - len(suffix_tokens))
    return [prefix_tokens + ele + suffix_tokens for ele in inputs["input_ids"]], prefix_tokens, suffix_tokens


def model_card_scores(yes, no):
    """softmax over [no, yes], taking the yes column, as the model card computes it."""
    return torch.nn.functional.log_softmax(torch.stack([no, yes], dim=1), dim=1)[:, 1].exp()


# (instruction or None for the default, query, document); the last document is longer than
# MAX_LENGTH so that its body is truncated.
PAIRS = [
    (None, "What is the capital of China?", "The capital of China is Beijing."),
    (None, "Explain gravity", "Gravity is a force that attracts two bodies towards each other."),
    ("Given a question, find the passage that answers it", "how to control rice blast",
     "Spray tricyclazole at the booting stage and drain the paddy."),
    (None, "对虾养殖的最佳水温是多少？", "对虾生长的适宜水温为25到30摄氏度。"),
    (None, "best time to plant maize", "🌽 Plant after the last frost, when soil reaches 10 °C."),
    (None, "why do fish need oxygen",
     " ".join(["Tilapia, carp and catfish grow well in warm ponds, but shrimp need clean water with "
               "dissolved oxygen above 5 mg/L; farmers check it every morning before sunrise."] * 8)),
]

MODELS = [("qwen3-tied", "qwen3", True), ("qwen3-untied", "qwen3", False),
          ("qwen2-tied", "qwen2", True), ("qwen2-untied", "qwen2", False)]


def build_model(kind: str, tied: bool, seed: int):
    vocab = 1505
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  max_position_embeddings=512, bos_token_id=1500, eos_token_id=1500, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    if kind == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=8, rope_theta=1_000_000.0, **common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(rope_theta=10_000.0, **common))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            # Norm weights near 1 and larger weights elsewhere, so that the scores spread out.
            p.copy_(1.0 + 0.1 * noise if name.endswith("norm.weight") else 0.2 * noise)
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model.to(torch.bfloat16).eval()


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    torch.set_num_threads(1)
    expected = {"max_length": MAX_LENGTH, "yes_token": YES_TOKEN, "no_token": NO_TOKEN,
                "default_instruction": DEFAULT_INSTRUCTION,
                "pairs": [{"instruction": i, "query": q, "document": d} for i, q, d in PAIRS], "models": {}}
    for seed, (name, kind, tied) in enumerate(MODELS, start=11):
        out = OUT / name
        build_model(kind, tied, seed).save_pretrained(str(out), safe_serialization=True)
        (out / "generation_config.json").unlink()
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(TOKENIZER_DIR / f, out / f)
        tokenizer = AutoTokenizer.from_pretrained(str(out), padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
        assert type(model).__name__ == ("Qwen3ForCausalLM" if kind == "qwen3" else "Qwen2ForCausalLM")
        assert model.config.tie_word_embeddings == tied
        from safetensors import safe_open
        with safe_open(str(out / "model.safetensors"), "pt") as f:
            keys = set(f.keys())
        assert ("lm_head.weight" in keys) == (not tied), sorted(keys)[:3]
        assert all(k == "lm_head.weight" or k.startswith("model.") for k in keys)

        # The model card's scoring, verbatim apart from names.
        token_false_id = tokenizer.convert_tokens_to_ids(NO_TOKEN)
        token_true_id = tokenizer.convert_tokens_to_ids(YES_TOKEN)
        ids, prefix_tokens, suffix_tokens = model_card_ids(tokenizer, PAIRS, MAX_LENGTH)
        padded = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt", max_length=MAX_LENGTH)
        with torch.no_grad():
            logits = model(**padded).logits[:, -1, :]
            yes, no = logits[:, token_true_id], logits[:, token_false_id]
            scores = model_card_scores(yes, no)
            # Each pair alone (no padding) gives the same logits: what packed sequences compute.
            for k, seq in enumerate(ids):
                alone = model(input_ids=torch.tensor([seq])).logits[0, -1]
                assert abs(alone[token_true_id] - yes[k]) < 1e-5 and abs(alone[token_false_id] - no[k]) < 1e-5
        assert len(ids[-1]) == MAX_LENGTH and max(len(s) for s in ids[:-1]) < MAX_LENGTH
        expected["models"][name] = {
            "model_type": kind, "tie_word_embeddings": tied, "yes_id": token_true_id, "no_id": token_false_id,
            "prefix_ids": prefix_tokens, "suffix_ids": suffix_tokens,
            "ids": ids, "yes_logits": yes.tolist(), "no_logits": no.tolist(), "scores": scores.tolist(),
        }
        print(f"{name}: yes {token_true_id} no {token_false_id}, lengths {[len(s) for s in ids]}, "
              f"scores {[round(s, 4) for s in scores.tolist()]}")
    (OUT / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, separators=(",", ":")) + "\n")
    total = fixture_common.list_written(OUT, FIXTURES, limit=1_000_000)
    print(f"total {total} bytes; transformers {transformers.__version__}, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
