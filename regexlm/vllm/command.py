"""``regexlm serve --engine vllm``: the options that go to vLLM, and loading the model for it.

The scale options are vLLM's own and pass straight through (``--tensor-parallel-size``,
``--pipeline-parallel-size``, ``--data-parallel-size``, ``--max-model-len``,
``--gpu-memory-utilization``, ``--enforce-eager``, ``--dtype``); ``--vllm-arg NAME=VALUE`` sets
any other field of vLLM's ``AsyncEngineArgs`` (``VALUE`` is read as JSON when it parses, else
as a string). The service's ``--max-batch-size`` becomes vLLM's ``max_num_seqs``.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "vLLM engine (--engine vllm)",
        "passed to vLLM's engine; --max-batch-size becomes its max_num_seqs",
    )
    group.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N")
    group.add_argument("--pipeline-parallel-size", type=int, default=1, metavar="N")
    group.add_argument("--data-parallel-size", type=int, default=1, metavar="N")
    group.add_argument(
        "--max-model-len", type=int, default=None, metavar="N", help="context length"
    )
    group.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=None,
        metavar="FRACTION",
        help="share of GPU memory for weights and KV cache",
    )
    group.add_argument(
        "--enforce-eager",
        action="store_true",
        help="no CUDA graphs or torch.compile: faster start, slower steps",
    )
    group.add_argument("--dtype", default="auto", help="model dtype (default %(default)s)")
    group.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other AsyncEngineArgs field (repeatable)",
    )


def parse_vllm_args(items: list[str]) -> dict:
    """``["name=value", ...]`` -> ``{"name": value}``, values read as JSON where they parse."""
    extra = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--vllm-arg takes NAME=VALUE, got {item!r}")
        try:
            extra[name.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            extra[name.replace("-", "_")] = value
    return extra


def options_from(args: argparse.Namespace):
    """The :class:`~regexlm.vllm.engine.EngineOptions` of parsed ``serve`` arguments."""
    from regexlm.vllm.engine import EngineOptions

    for name in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    return EngineOptions(
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        data_parallel_size=args.data_parallel_size,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=args.enforce_eager,
        max_num_seqs=args.max_batch_size,
        dtype=args.dtype,
        extra=parse_vllm_args(args.vllm_arg),
    )
