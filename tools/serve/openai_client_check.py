"""The OpenAI Python client, unchanged, against `embedtune serve`'s /v1/embeddings.

Usage: python openai_client_check.py EMBEDTUNE MODEL_DIR ADAPTER_DIR

Starts the server on a free port with the model and one adapter, asks for embeddings through
`openai.OpenAI(base_url=…).embeddings.create` (the client asks for base64 and decodes it), checks
each against `embedtune embed` of the same text (≤ 1e-5), the token usage, `dimensions`, and
that an unknown model is an `openai.NotFoundError`; then stops the server with SIGTERM.
"""
import re
import signal
import struct
import subprocess
import sys
import tempfile

import openai

exe, model, adapter = sys.argv[1:4]
texts = ["Hello, world!", "稻田养鱼是一种生态农业模式。", "How do I apply for a building permit?"]

with tempfile.TemporaryDirectory() as tmp:
    with open(f"{tmp}/texts.txt", "w") as f:
        f.write("\n".join(texts) + "\n")
    subprocess.run([exe, "embed", "--model", model, "--adapter", adapter, "--input", f"{tmp}/texts.txt",
                    "--output", f"{tmp}/ref.npy", "--quiet"], check=True)
    data = open(f"{tmp}/ref.npy", "rb").read()
    header = struct.unpack("<H", data[8:10])[0]
    values = struct.unpack(f"<{(len(data) - 10 - header) // 4}f", data[10 + header:])
    dim = len(values) // len(texts)
    reference = [values[i * dim:(i + 1) * dim] for i in range(len(texts))]

server = subprocess.Popen([exe, "serve", "--model", model, "--adapters", f"tuned={adapter}", "--port", "0"],
                          stderr=subprocess.PIPE, text=True)
try:
    port = None
    for line in server.stderr:
        m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    assert port, "the server did not start"
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    response = client.embeddings.create(input=texts, model="tuned")
    assert response.model == "tuned" and len(response.data) == len(texts)
    worst = max(abs(a - b) for item, ref in zip(response.data, reference) for a, b in zip(item.embedding, ref))
    assert worst <= 1e-5, f"max |Δ| {worst}"
    assert response.usage.prompt_tokens > len(texts) and response.usage.total_tokens == response.usage.prompt_tokens
    short = client.embeddings.create(input=texts[0], model="tuned", dimensions=16, encoding_format="float")
    assert len(short.data[0].embedding) == 16
    try:
        client.embeddings.create(input="x", model="no-such-model")
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert "no-such-model" in str(e)
    print(f"openai {openai.__version__}: /v1/embeddings OK ({len(texts)} texts, max |Δ| vs embed {worst:.1e}, "
          f"{response.usage.prompt_tokens} tokens, dimensions=16, unknown model → 404)")
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
assert server.returncode == 0, f"server exit {server.returncode}"
