"""What the model fixture scripts share. Importing it first sets Hugging Face offline and quiet
(no hub access, no tokenizer threads), before transformers is imported; `list_written` prints
what a script wrote, with sizes and hash prefixes to compare rebuilds at a glance."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def list_written(out: Path, fixtures: Path, limit: int) -> int:
    """Prints every file under `out` (size, sha256 prefix) and checks their total stays under `limit` bytes."""
    total = 0
    for p in sorted(out.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"  {p.relative_to(fixtures)}  {p.stat().st_size:>7}  {hashlib.sha256(p.read_bytes()).hexdigest()[:12]}")
    assert total < limit, total
    return total
