#!/usr/bin/env python3
"""Build the GGUF test fixtures for EmbedTune's Swift GGUF reader.

Dev-time only (like make_fixtures.py): it writes small, committed files under
Tests/Fixtures/gguf/ that the Swift tests compare against.

  quant_types.gguf               one small tensor per ggml type EmbedTune dequantises
                                 (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), one it does not
                                 (Q5_K), and metadata of every GGUF value type
  reference_dequant.safetensors  gguf-py's own dequantisation (gguf.quants.dequantize) of
                                 every tensor in quant_types.gguf, fp32, PyTorch-order shapes:
                                 the oracle the Swift test compares against
  tiny-qwen3-q8_0.gguf           Tests/Fixtures/tiny-qwen3 converted the way llama.cpp's
                                 convert_hf_to_gguf.py does (llama.cpp tensor names, 2-D
                                 weights Q8_0, norms F32, qwen3.* hyper-parameters, gpt2/qwen2
                                 tokenizer metadata)

gguf-py (0.19) can quantise F16/BF16/Q8_0/Q4_0 but not Q4_K/Q6_K/Q5_K; for those the
blocks are random valid bytes (finite fp16 super-block scales, random 6-bit/8-bit
sub-scales, random quants), which exercises every bit of the packing. The script also
re-implements ggml's reference C loops (ggml-quants.c: dequantize_row_q4_0, _q8_0, _q4_K
with get_scale_min_k4, _q6_K) in float32 scalar arithmetic and asserts that gguf-py's
dequantisation agrees bit for bit, so the oracle is ggml's reference code.

Deterministic (fixed seed): running it twice gives byte-identical files.

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/make_gguf_fixtures.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import save_file, load_file

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "gguf"
TINY_QWEN3 = ROOT / "Tests" / "Fixtures" / "tiny-qwen3"

QK_K = 256


# --- ggml reference C loops, transcribed (float32 scalar arithmetic, same operation order) ---

def f16(b: np.ndarray, at: int) -> np.float32:
    return np.frombuffer(bytes(b[at:at + 2]), dtype="<f2")[0].astype(np.float32)


def c_dequant_q8_0(raw: np.ndarray) -> np.ndarray:
    blocks = raw.reshape(-1, 34)
    out = []
    for b in blocks:
        d = f16(b, 0)
        qs = b[2:].view(np.int8)
        out += [np.float32(qs[j]) * d for j in range(32)]
    return np.array(out, dtype=np.float32)


def c_dequant_q4_0(raw: np.ndarray) -> np.ndarray:
    blocks = raw.reshape(-1, 18)
    out = []
    for b in blocks:
        d = f16(b, 0)
        y = [np.float32(0)] * 32
        for j in range(16):
            x0 = int(b[2 + j] & 0x0F) - 8
            x1 = int(b[2 + j] >> 4) - 8
            y[j] = np.float32(x0) * d
            y[j + 16] = np.float32(x1) * d
        out += y
    return np.array(out, dtype=np.float32)


def get_scale_min_k4(j: int, q: np.ndarray) -> tuple[int, int]:
    if j < 4:
        return int(q[j]) & 63, int(q[j + 4]) & 63
    d = (int(q[j + 4]) & 0xF) | ((int(q[j - 4]) >> 6) << 4)
    m = (int(q[j + 4]) >> 4) | ((int(q[j]) >> 6) << 4)
    return d, m


def c_dequant_q4_k(raw: np.ndarray) -> np.ndarray:
    blocks = raw.reshape(-1, 144)
    out = []
    for b in blocks:
        d = f16(b, 0)
        mn = f16(b, 2)
        scales = b[4:16]
        q = b[16:144]
        qi = 0
        is_ = 0
        for _ in range(0, QK_K, 64):
            sc, m = get_scale_min_k4(is_ + 0, scales)
            d1 = d * np.float32(sc); m1 = mn * np.float32(m)
            sc, m = get_scale_min_k4(is_ + 1, scales)
            d2 = d * np.float32(sc); m2 = mn * np.float32(m)
            out += [d1 * np.float32(q[qi + l] & 0xF) - m1 for l in range(32)]
            out += [d2 * np.float32(q[qi + l] >> 4) - m2 for l in range(32)]
            qi += 32
            is_ += 2
    return np.array(out, dtype=np.float32)


def c_dequant_q6_k(raw: np.ndarray) -> np.ndarray:
    blocks = raw.reshape(-1, 210)
    out = []
    for b in blocks:
        ql = b[0:128]; qh = b[128:192]; sc = b[192:208].view(np.int8)
        d = f16(b, 208)
        y = [np.float32(0)] * QK_K
        for n in range(0, QK_K, 128):
            lo, ho, so = n // 2, n // 4, n // 16
            for l in range(32):
                is_ = l // 16
                q1 = ((int(ql[lo + l]) & 0xF) | (((int(qh[ho + l]) >> 0) & 3) << 4)) - 32
                q2 = ((int(ql[lo + l + 32]) & 0xF) | (((int(qh[ho + l]) >> 2) & 3) << 4)) - 32
                q3 = ((int(ql[lo + l]) >> 4) | (((int(qh[ho + l]) >> 4) & 3) << 4)) - 32
                q4 = ((int(ql[lo + l + 32]) >> 4) | (((int(qh[ho + l]) >> 6) & 3) << 4)) - 32
                y[n + l + 0] = d * np.float32(sc[so + is_ + 0]) * np.float32(q1)
                y[n + l + 32] = d * np.float32(sc[so + is_ + 2]) * np.float32(q2)
                y[n + l + 64] = d * np.float32(sc[so + is_ + 4]) * np.float32(q3)
                y[n + l + 96] = d * np.float32(sc[so + is_ + 6]) * np.float32(q4)
        out += y
    return np.array(out, dtype=np.float32)


C_REFERENCE = {T.Q8_0: c_dequant_q8_0, T.Q4_0: c_dequant_q4_0, T.Q4_K: c_dequant_q4_k, T.Q6_K: c_dequant_q6_k}


# --- random valid K-quant blocks (gguf-py cannot quantise these types) ---

def random_f16(rng: np.random.Generator, n: int, lo: float, hi: float, signed: bool) -> np.ndarray:
    v = rng.uniform(lo, hi, size=n)
    if signed:
        v *= rng.choice([-1.0, 1.0], size=n)
    return v.astype("<f2").view(np.uint8).reshape(n, 2)


def random_blocks(rng: np.random.Generator, qtype: T, rows: int, cols: int) -> np.ndarray:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows * cols // block
    if qtype == T.Q4_K:    # d, dmin (fp16), scales[12] (packed 6-bit), qs[128]
        parts = [random_f16(rng, n, 0.001, 0.05, True), random_f16(rng, n, 0.001, 0.05, False),
                 rng.integers(0, 256, size=(n, 12), dtype=np.uint8), rng.integers(0, 256, size=(n, 128), dtype=np.uint8)]
    elif qtype == T.Q6_K:  # ql[128], qh[64], scales[16] (int8), d (fp16)
        parts = [rng.integers(0, 256, size=(n, 128), dtype=np.uint8), rng.integers(0, 256, size=(n, 64), dtype=np.uint8),
                 rng.integers(0, 256, size=(n, 16), dtype=np.uint8), random_f16(rng, n, 0.0005, 0.01, True)]
    elif qtype == T.Q5_K:  # d, dmin, scales[12], qh[32], qs[128]
        parts = [random_f16(rng, n, 0.001, 0.05, True), random_f16(rng, n, 0.001, 0.05, False),
                 rng.integers(0, 256, size=(n, 12 + 32 + 128), dtype=np.uint8)]
    else:
        raise ValueError(qtype)
    raw = np.concatenate(parts, axis=1)
    assert raw.shape == (n, size)
    return raw.reshape(rows, cols // block * size)


def write_quant_types(rng: np.random.Generator) -> None:
    w = gguf.GGUFWriter(OUT / "quant_types.gguf", "embedtune-test")
    # Metadata of every GGUF value type, with known values the Swift test checks.
    w.add_uint8("test.uint8", 200)
    w.add_int8("test.int8", -100)
    w.add_uint16("test.uint16", 60000)
    w.add_int16("test.int16", -30000)
    w.add_uint32("test.uint32", 4_000_000_000)
    w.add_int32("test.int32", -2_000_000_000)
    w.add_float32("test.float32", 0.25)
    w.add_uint64("test.uint64", 2**63 + 5)
    w.add_int64("test.int64", -(2**62))
    w.add_float64("test.float64", -1.5e300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo wörld ✓")
    w.add_array("test.array.int32", [1, -2, 3])
    w.add_array("test.array.string", ["a", "bc", ""])
    w.add_key_value("test.array.nested", [[1, 2], [3], [4, 5, 6]], gguf.GGUFValueType.ARRAY)
    w.add_key_value("test.array.float32", [0.5, -1.0], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_key_value("test.array.bool", [True, False], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.BOOL)

    reference: dict[str, np.ndarray] = {}

    def add(name: str, qtype: T, shape: tuple[int, ...], values: np.ndarray | None = None) -> None:
        if qtype in (T.Q4_K, T.Q6_K, T.Q5_K):
            raw = random_blocks(rng, qtype, shape[0], shape[1])
        else:
            data = values if values is not None else rng.standard_normal(shape).astype(np.float32)
            raw = gguf.quants.quantize(data, qtype)
        ref = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        assert ref.shape == shape, (name, ref.shape, shape)
        assert np.all(np.isfinite(ref)), name
        if qtype in C_REFERENCE:
            c = C_REFERENCE[qtype](raw.view(np.uint8).reshape(-1)).reshape(shape)
            assert np.array_equal(c.view(np.uint32), ref.view(np.uint32)), f"{name}: gguf-py differs from the ggml C loops"
        w.add_tensor(name, raw, raw_dtype=None if qtype in (T.F32, T.F16) else qtype)
        reference[name] = np.ascontiguousarray(ref)

    # F16 / BF16 edge values: subnormals, signed zero, the largest finite values.
    edge16 = np.array([0.0, -0.0, 6e-8, -3e-5, 6.1e-5, 65504.0, -65504.0, 1.0, -2.0, 0.1], dtype=np.float32)
    f16_values = rng.standard_normal((2, 256)).astype(np.float32)
    f16_values.reshape(-1)[:edge16.size] = edge16
    bf16_values = rng.standard_normal((2, 256)).astype(np.float32)
    bf16_values.reshape(-1)[:6] = [0.0, -0.0, 1e-40, 3e38, -1e30, 1.0 / 3.0]

    add("f32", T.F32, (2, 256))
    add("f32_3d", T.F32, (2, 3, 5))
    add("f16", T.F16, (2, 256), f16_values)
    add("bf16", T.BF16, (2, 256), bf16_values)
    add("q8_0", T.Q8_0, (4, 256))
    add("q4_0", T.Q4_0, (3, 64))
    add("q4_k", T.Q4_K, (2, 256))
    add("q6_k", T.Q6_K, (2, 256))
    add("q5_k_unsupported", T.Q5_K, (1, 256))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(reference, str(OUT / "reference_dequant.safetensors"))

    # Read back with gguf-py's reader: every tensor's bytes dequantise to the reference.
    r = gguf.GGUFReader(OUT / "quant_types.gguf")
    for t in r.tensors:
        back = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.array_equal(back.reshape(reference[t.name].shape), reference[t.name]), t.name
    nested = r.fields["test.array.nested"]  # gguf-py's reader flattens nested arrays
    assert nested.types[:2] == [gguf.GGUFValueType.ARRAY] * 2 and nested.contents() == [1, 2, 3, 4, 5, 6], nested


def write_tiny_qwen3() -> None:
    config = json.loads((TINY_QWEN3 / "config.json").read_text())
    weights = load_file(str(TINY_QWEN3 / "model.safetensors"))
    arch = "qwen3"
    w = gguf.GGUFWriter(OUT / "tiny-qwen3-q8_0.gguf", arch)
    # What convert_hf_to_gguf.py writes for a Qwen3 embedding model with --outtype q8_0.
    w.add_type("model")
    w.add_name("tiny-qwen3")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config["num_key_value_heads"])
    w.add_rope_freq_base(config["rope_theta"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_key_length(config["head_dim"])
    w.add_value_length(config["head_dim"])
    w.add_pooling_type(gguf.PoolingType.LAST)

    # Tokenizer, as convert_hf_to_gguf.py's _set_vocab_gpt2 / get_vocab_base does it.
    tok = json.loads((TINY_QWEN3 / "tokenizer.json").read_text())
    tok_config = json.loads((TINY_QWEN3 / "tokenizer_config.json").read_text())
    vocab_size = config["vocab_size"]
    by_id: dict[int, str] = {i: t for t, i in tok["model"]["vocab"].items()}
    added = {a["id"]: a for a in tok["added_tokens"]}
    tokens, types = [], []
    for i in range(vocab_size):
        if i in added:
            tokens.append(added[i]["content"])
            special = tok_config["added_tokens_decoder"][str(i)]["special"]
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(TINY_QWEN3, load_merges=True, n_vocab=vocab_size)
    special.add_to_gguf(w, quiet=True)

    names = {
        "embed_tokens.weight": "token_embd.weight",
        "norm.weight": "output_norm.weight",
    }
    per_layer = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(config["num_hidden_layers"]):
        for hf, ll in per_layer.items():
            names[f"layers.{i}.{hf}"] = f"blk.{i}.{ll}"
    # Cross-check against gguf-py's own tensor map.
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, config["num_hidden_layers"])
    for hf, ll in names.items():
        assert tmap.get_name(hf, try_suffixes=(".weight", ".bias")) == ll, (hf, ll)
    assert sorted(names) == sorted(weights), "the fixture's tensors changed"

    for hf in sorted(weights, key=lambda n: (n.count("."), n)):  # embeddings and final norm first
        data = weights[hf].astype(np.float32)
        if data.ndim == 2:
            w.add_tensor(names[hf], gguf.quants.quantize(data, T.Q8_0), raw_dtype=T.Q8_0)
        else:
            w.add_tensor(names[hf], data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(OUT / "tiny-qwen3-q8_0.gguf")
    for t in r.tensors:
        hf = next(k for k, v in names.items() if v == t.name)
        back = gguf.quants.dequantize(t.data, t.tensor_type).reshape(weights[hf].shape)
        err = float(np.abs(back - weights[hf]).max() / np.abs(weights[hf]).max())
        assert err < 0.005, (t.name, err)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240607)
    write_quant_types(rng)
    write_tiny_qwen3()
    total = 0
    for p in sorted(OUT.iterdir()):
        data = p.read_bytes()
        total += len(data)
        print(f"{p.relative_to(ROOT)}  {len(data):7d} bytes  sha256 {hashlib.sha256(data).hexdigest()[:16]}")
    print(f"total {total} bytes")
    assert total < 300_000, "GGUF fixtures must stay under 300 KB"
    return 0


if __name__ == "__main__":
    sys.exit(main())
