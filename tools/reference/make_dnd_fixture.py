"""Reference fixture for Drag-and-Drop's hyper-convolutional decoder (EmbedTuneGeneration/HyperConv.swift):
Tests/Fixtures/dnd/hyperconv.json.

    tools/reference/.venv/bin/python tools/reference/make_dnd_fixture.py

The decoder in PyTorch (float64) as the DnD authors' HyperConv3d / HyperConvLayer / HyperConvBlock
compute it: LayerNorm over (H, W); a width-first path (Conv2d with W as channels over (H, S), then
H as channels over (S, W')) and a height-first one (H first, then W, tanh), averaged with a bias;
then a Conv2d with S as channels over (H', W') with bias; a residual where the shape is kept. Every
Conv2d is "same"-padded. Parameters are set by a formula both sides compute (value i of the flat
buffer = 0.3·sin(0.37·i + 0.1)) in the Swift layout: per layer the norm's weight and bias (H, W),
conv1w (W', W, k, k), conv1h (H', H, k, k), conv2h (H', H, k, k), conv2w (W', W, k, k), bias
(H', W'), conv_s (S', S, k, k), conv_s bias (S'). The loss is Σ c·y over the output with fixed
coefficients c; the fixture holds the output and the gradient of every parameter.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "dnd")

FEATURES = [(3, 4, 5), (3, 4, 5), (2, 3, 6)]
KERNEL = 3
SAMPLES = 2


def value(i):
    return 0.3 * math.sin(0.37 * i + 0.1)


def conv(x, weight, bias=None):
    # x: (B, C, P, Q) → (B, C', P, Q), "same" padding.
    return F.conv2d(x, weight, bias, padding=KERNEL // 2)


def main():
    torch.set_default_dtype(torch.float64)
    shapes, k = [], KERNEL
    for li, ((s, h, w), (s2, h2, w2)) in enumerate(zip(FEATURES, FEATURES[1:])):
        shapes += [(f"norm_w{li}", (h, w)), (f"norm_b{li}", (h, w)), (f"conv1w{li}", (w2, w, k, k)), (f"conv1h{li}", (h2, h, k, k)),
                   (f"conv2h{li}", (h2, h, k, k)), (f"conv2w{li}", (w2, w, k, k)), (f"bias{li}", (h2, w2)),
                   (f"convs{li}", (s2, s, k, k)), (f"convs_b{li}", (s2,))]
    params, offset = {}, 0
    for name, shape in shapes:
        n = math.prod(shape)
        params[name] = torch.tensor([value(offset + j) for j in range(n)]).reshape(shape).requires_grad_(True)
        offset += n
    s0, h0, w0 = FEATURES[0]
    x = torch.tensor([math.cos(0.5 * j + 0.2) for j in range(SAMPLES * s0 * h0 * w0)]).reshape(SAMPLES, s0, h0, w0)
    inputs = x.reshape(-1).tolist()
    for li, ((s, h, w), out) in enumerate(zip(FEATURES, FEATURES[1:])):
        n = F.layer_norm(x, (h, w), params[f"norm_w{li}"], params[f"norm_b{li}"], eps=1e-5)
        # width first: B,S,H,W -> B,W,H,S; conv W; back; -> B,H,S,W'; conv H; back
        a = conv(n.transpose(-1, -3), params[f"conv1w{li}"]).transpose(-1, -3)
        a = conv(a.transpose(-2, -3), params[f"conv1h{li}"]).transpose(-2, -3)
        # height first
        b = conv(n.transpose(-2, -3), params[f"conv2h{li}"]).transpose(-2, -3)
        b = torch.tanh(conv(b.transpose(-1, -3), params[f"conv2w{li}"]).transpose(-1, -3))
        m = (a + b + params[f"bias{li}"]) / 3
        y = conv(m, params[f"convs{li}"], params[f"convs_b{li}"])
        x = x + y if y.shape == x.shape else y
    c = torch.tensor([math.sin(1.3 * j) for j in range(x.numel())]).reshape(x.shape)
    (c * x).sum().backward()
    grads = []
    for name, _ in shapes:
        grads += params[name].grad.reshape(-1).tolist()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "hyperconv.json"), "w") as f:
        json.dump({"features": FEATURES, "kernel": KERNEL, "samples": SAMPLES, "input": inputs, "output": x.detach().reshape(-1).tolist(),
                   "grads": grads, "parameter_count": offset, "torch": torch.__version__}, f)
    print(f"wrote {OUT}/hyperconv.json ({offset} parameters)")


if __name__ == "__main__":
    main()
