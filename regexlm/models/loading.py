"""Load a causal LM and its tokenizer from a name or a local path, never from the network.

``resolve_model_source`` decides what a name means (the default model, a folder or a GGUF
file) and fails with a :class:`~regexlm.errors.ModelLoadError` that names the path when it is
missing or unusable. The loaders then call transformers with ``local_files_only=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from regexlm.errors import ModelLoadError
from regexlm.models.embedded import EMBEDDED_MODELS, ensure_converted, find_embedded

# No model or tokenizer ever comes from a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class ModelSource:
    """What a model name resolved to: a plain folder, or a GGUF file inside a folder."""

    folder: Path
    gguf_file: str | None = None

    def describe(self) -> str:
        return str(self.folder / self.gguf_file) if self.gguf_file else str(self.folder)


def resolve_model_source(name_or_path: str | os.PathLike | None = None) -> ModelSource:
    """Turn a model name or path into a local :class:`ModelSource`.

    An embedded model's name (``smollm2``, ``gemma3-270m``; ``None`` is the default) wins over a
    path of the same name; an embedded model is converted on first use (see
    :mod:`regexlm.models.embedded`).
    """
    embedded = find_embedded(None if name_or_path is None else str(name_or_path))
    if embedded is not None:
        return ModelSource(ensure_converted(embedded))
    path = Path(name_or_path).expanduser()
    if not path.exists():
        names = ", ".join(repr(name) for name in EMBEDDED_MODELS)
        raise ModelLoadError(
            f"model not found: {path} does not exist. Pass an embedded model ({names}; "
            "'smollm2' is the default), a local Hugging Face model folder, or a .gguf file."
        )
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"cannot load model from {path}: a model file must be a .gguf file; "
                "otherwise pass the model's folder."
            )
        return ModelSource(path.parent, path.name)
    if not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(path, ggufs[0].name)
        raise ModelLoadError(
            f"cannot load model from {path}: the folder has no config.json "
            "(expected a Hugging Face model folder or a single .gguf file)."
        )
    return ModelSource(path)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(name_or_path: str | os.PathLike | None = None):
    """Load only the tokenizer of a model (the default one when no name is given)."""
    source = resolve_model_source(name_or_path)
    return _load_tokenizer(source)


def _load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source.folder, gguf_file=source.gguf_file, local_files_only=True
        )
    except Exception as exc:  # transformers raises many kinds; name the path in ours
        raise ModelLoadError(
            f"cannot load the tokenizer from {source.describe()}: {type(exc).__name__}: {exc}"
        ) from exc
    if source.gguf_file is not None:
        _apply_gguf_special_flags(tokenizer, source.folder / source.gguf_file)
    return tokenizer


def _apply_gguf_special_flags(tokenizer, path: Path) -> None:
    """Honour the GGUF file's ``tokenizer.ggml.add_bos_token`` / ``add_eos_token``.

    transformers before 5.20 (the versions vLLM pins) drops them when it converts a GGUF
    tokenizer, so a Gemma prompt would lose the BOS its model expects; later versions keep them.
    """
    try:
        from gguf import GGUFReader

        fields = GGUFReader(str(path)).fields
    except Exception:  # not readable here: keep what transformers made
        return
    for name in ("add_bos_token", "add_eos_token"):
        field = fields.get(f"tokenizer.ggml.{name}")
        if field is None or not hasattr(tokenizer, name):
            continue
        wanted = bool(field.contents())
        if bool(getattr(tokenizer, name)) != wanted:
            try:
                setattr(tokenizer, name, wanted)
            except (AttributeError, TypeError):  # a tokenizer class without the setter
                pass


def load_model(
    name_or_path: str | os.PathLike | None = None, device: str | None = None, dtype=None
):
    """Load ``(model, tokenizer)`` for inference, in eval mode on ``device``.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` defaults to float32 on the
    CPU and bfloat16 on CUDA.
    """
    import torch

    source = resolve_model_source(name_or_path)
    device = device or default_device()
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    tokenizer = _load_tokenizer(source)
    model = _load_causal_lm(source, dtype)
    model.to(device)
    model.eval()
    return model, tokenizer


def _load_causal_lm(source: ModelSource, dtype):
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    # A plain safetensors folder loads in a second or two: no progress bar. A GGUF file takes
    # about 20 s to de-quantize, so its progress stays visible.
    quiet = source.gguf_file is None and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        return AutoModelForCausalLM.from_pretrained(
            source.folder, gguf_file=source.gguf_file, dtype=dtype, local_files_only=True
        )
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the model from {source.describe()}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if quiet:
            hf_logging.enable_progress_bar()


def load_gguf(path: Path):
    """Load a GGUF file as a de-quantized float32 (model, tokenizer) on the CPU."""
    import torch

    source = ModelSource(path.parent, path.name)
    return _load_causal_lm(source, torch.float32), _load_tokenizer(source)
