"""Random-weight Qwen3 models of the shapes in the performance issue, for `bench train|embed` and the
peer: the tiny fixture's tokenizer and sentence-transformers files, a config with the preset's shape,
and weights from transformers' own initialisation (seed 0), saved as model.safetensors.

    python bench/peer/make_model.py tiny-qwen3-256 out/bench/models/tiny-qwen3-256
    python bench/peer/make_model.py qwen3-0.6b-shape out/bench/models/qwen3-0.6b-shape

Dev-time only (torch + transformers, e.g. bench/peer/.venv or tools/reference/.venv).
"""
import json
import shutil
import sys
from pathlib import Path

PRESETS = {
    # hidden 256, 4 layers, 4/2 heads, head_dim 64, inter 768 (the "tiny Qwen3")
    "tiny-qwen3-256": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=64, intermediate_size=768),
    # Qwen3-Embedding-0.6B's shape (its vocabulary rows too), random weights
    "qwen3-0.6b-shape": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                             head_dim=128, intermediate_size=3072, vocab_size=151669, max_position_embeddings=32768),
}


def main() -> None:
    preset, out = sys.argv[1], Path(sys.argv[2])
    import torch
    from transformers import Qwen3Config, Qwen3Model

    fixture = Path(__file__).resolve().parents[2] / "Tests/Fixtures/tiny-qwen3"
    if (out / "model.safetensors").exists():
        print(f"{out}: present")
        return
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((fixture / "config.json").read_text())
    config.update(PRESETS[preset])
    cfg = Qwen3Config(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
    torch.manual_seed(0)
    model = Qwen3Model(cfg).to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    for name in ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "modules.json",
                 "config_sentence_transformers.json"]:
        shutil.copy(fixture / name, out / name)
    shutil.copytree(fixture / "1_Pooling", out / "1_Pooling", dirs_exist_ok=True)
    pooling = json.loads((out / "1_Pooling/config.json").read_text())
    pooling["word_embedding_dimension"] = cfg.hidden_size
    (out / "1_Pooling/config.json").write_text(json.dumps(pooling, indent=2))
    params = sum(p.numel() for p in model.parameters())
    print(f"{out}: {preset}, {params / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
