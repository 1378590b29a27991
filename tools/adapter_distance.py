#!/usr/bin/env python3
"""Largest relative L2 distance, tensor by tensor, between two adapters:
tools/adapter_distance.py DIR_A DIR_B  (each holds adapter_model.safetensors).
Prints the distance; exits 1 when the tensor names or shapes differ. Standard library only."""
import json, math, struct, sys
from array import array

FORMATS = {"F32": "f", "F64": "d"}


def read(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        fmt = FORMATS.get(info["dtype"])
        if fmt is None:
            sys.exit(f"{path}: {name}: dtype {info['dtype']} not supported")
        start, end = info["data_offsets"]
        values = array(fmt, blob[8 + n + start:8 + n + end])
        if sys.byteorder != "little":
            values.byteswap()
        tensors[name] = (info["shape"], values)
    return tensors


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: adapter_distance.py DIR_A DIR_B")
    a, b = (read(d.rstrip("/") + "/adapter_model.safetensors") for d in sys.argv[1:])
    if sorted(a) != sorted(b):
        print("tensor names differ", file=sys.stderr)
        sys.exit(1)
    worst = 0.0
    for name, (shape, x) in a.items():
        shape_b, y = b[name]
        if shape != shape_b:
            print(f"{name}: shape {shape} vs {shape_b}", file=sys.stderr)
            sys.exit(1)
        d = math.sqrt(sum((p - q) * (p - q) for p, q in zip(x, y)))
        norm = math.sqrt(sum(p * p for p in x))
        worst = max(worst, d / max(norm, 1e-12))
    print(f"{worst:.3e}")


if __name__ == "__main__":
    main()
