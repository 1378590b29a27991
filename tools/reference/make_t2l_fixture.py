"""Reference fixture for the Text-to-LoRA hypernetwork (EmbedTuneGeneration/Hypernetwork.swift):
Tests/Fixtures/t2l/hypernetwork.json.

    tools/reference/.venv/bin/python tools/reference/make_t2l_fixture.py

The same network in PyTorch (float64): x0 = [e | layer_emb[l] | module_emb[m]], h = Linear(x0),
per block h = h + Linear2(relu(Linear1(h))), per module type y = head_m(h). Parameters are set by a
formula both sides compute (value i of the flat buffer = 0.3·sin(0.37·i + 0.1)), in the Swift
layout: layer embeddings, module embeddings, input weight and bias, per block W1, b1, W2, b2, per
module type head weight and bias (weights row-major [out, in], as nn.Linear stores them). The
loss is Σ c·y over the outputs with fixed coefficients c; the fixture holds the outputs and the
gradient of every parameter.
"""
import json
import math
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "t2l")

D, LAYERS, RANK, LDIM, MDIM, H, BLOCKS = 6, 3, 2, 3, 2, 8, 2
TYPES = [("layer.*.q", 5, 4), ("layer.*.up", 4, 7)]
ROWS = [(0, 0, 0), (0, 1, 1), (1, 2, 0), (1, 0, 1), (0, 2, 1)]


def value(i):
    return 0.3 * math.sin(0.37 * i + 0.1)


def main():
    torch.set_default_dtype(torch.float64)
    din = D + LDIM + MDIM
    shapes = [("layer_embedding", (LAYERS, LDIM)), ("module_embedding", (len(TYPES), MDIM)), ("in_weight", (H, din)), ("in_bias", (H,))]
    for k in range(BLOCKS):
        shapes += [(f"w1_{k}", (2 * H, H)), (f"b1_{k}", (2 * H,)), (f"w2_{k}", (H, 2 * H)), (f"b2_{k}", (H,))]
    for m, (_, i, o) in enumerate(TYPES):
        p = RANK * (i + o)
        shapes += [(f"head_w_{m}", (p, H)), (f"head_b_{m}", (p,))]
    params, offset = {}, 0
    for name, shape in shapes:
        n = math.prod(shape)
        params[name] = torch.tensor([value(offset + j) for j in range(n)]).reshape(shape).requires_grad_(True)
        offset += n
    descriptions = torch.tensor([math.cos(0.5 * j + 0.2) for j in range(2 * D)]).reshape(2, D)

    x0 = torch.stack([torch.cat([descriptions[d], params["layer_embedding"][l], params["module_embedding"][m]]) for d, l, m in ROWS])
    h = x0 @ params["in_weight"].T + params["in_bias"]
    for k in range(BLOCKS):
        u = torch.relu(h @ params[f"w1_{k}"].T + params[f"b1_{k}"])
        h = h + u @ params[f"w2_{k}"].T + params[f"b2_{k}"]
    outputs, loss = [], 0
    for m in range(len(TYPES)):
        idx = [r for r, (_, _, mm) in enumerate(ROWS) if mm == m]
        y = h[idx] @ params[f"head_w_{m}"].T + params[f"head_b_{m}"]
        c = torch.tensor([math.sin(1.3 * j + m) for j in range(y.numel())]).reshape(y.shape)
        loss = loss + (c * y).sum()
        outputs.append(y.detach().reshape(-1).tolist())
    loss.backward()
    grads = []
    for name, _ in shapes:
        grads += params[name].grad.reshape(-1).tolist()
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "hypernetwork.json"), "w") as f:
        json.dump({"description_dim": D, "layers": LAYERS, "rank": RANK, "layer_embedding_dim": LDIM, "module_embedding_dim": MDIM,
                   "hidden": H, "blocks": BLOCKS, "types": [{"name": n, "in": i, "out": o} for n, i, o in TYPES],
                   "rows": ROWS, "descriptions": descriptions.reshape(-1).tolist(), "outputs": outputs, "grads": grads,
                   "parameter_count": offset, "torch": torch.__version__}, f)
    print(f"wrote {OUT}/hypernetwork.json ({offset} parameters)")


if __name__ == "__main__":
    main()
