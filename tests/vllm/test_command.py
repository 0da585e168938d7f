"""``regexlm serve --engine vllm``'s options: what reaches vLLM's engine arguments."""

from __future__ import annotations

import pytest

from regexlm.cli import build_parser
from regexlm.vllm.command import options_from, parse_vllm_args


def serve_args(*argv):
    return build_parser().parse_args(["serve", "--engine", "vllm", *argv])


def test_scale_options_pass_through_to_vllm():
    args = serve_args(
        "--tensor-parallel-size",
        "4",
        "--pipeline-parallel-size",
        "2",
        "--data-parallel-size",
        "3",
        "--max-model-len",
        "2048",
        "--gpu-memory-utilization",
        "0.8",
        "--enforce-eager",
        "--max-batch-size",
        "48",
        "--vllm-arg",
        "swap_space=8",
        "--vllm-arg",
        "kv-cache-dtype=fp8",
        "--vllm-arg",
        'limit_mm_per_prompt={"image": 0}',
    )
    engine_args = options_from(args).engine_args("/models/m")
    assert engine_args["model"] == "/models/m"
    assert engine_args["tensor_parallel_size"] == 4
    assert engine_args["pipeline_parallel_size"] == 2
    assert engine_args["data_parallel_size"] == 3
    assert engine_args["max_model_len"] == 2048
    assert engine_args["gpu_memory_utilization"] == 0.8
    assert engine_args["enforce_eager"] is True
    assert engine_args["max_num_seqs"] == 48  # --max-batch-size
    assert engine_args["swap_space"] == 8 and engine_args["kv_cache_dtype"] == "fp8"
    assert engine_args["limit_mm_per_prompt"] == {"image": 0}


def test_the_arguments_are_fields_vllm_knows():
    from vllm.engine.arg_utils import AsyncEngineArgs

    from regexlm.vllm.engine import model_folder

    args = serve_args("--tensor-parallel-size", "2", "--max-model-len", "512")
    AsyncEngineArgs(**options_from(args).engine_args(model_folder(None)))  # no unknown field


@pytest.mark.parametrize("item", ["no-equals", "=value"])
def test_a_malformed_vllm_arg_is_refused(item):
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_vllm_args([item])


def test_parallel_sizes_must_be_positive():
    with pytest.raises(ValueError, match="--tensor-parallel-size must be at least 1"):
        options_from(serve_args("--tensor-parallel-size", "0"))
