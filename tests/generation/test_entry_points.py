"""`regexlm.generate` as a module and a function, `generate(model=...)`, and the CLI subcommand."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from regexlm.errors import RegexError

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_model, tmp_path_factory):
    """The tiny model saved as a local Hugging Face folder, loadable by name or path."""
    model, tokenizer = tiny_model
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_import_module_form_is_callable(tiny_model_dir):
    code = f"""
import regexlm.generate
import regexlm
out = regexlm.generate("The year is ", r"[0-9]{{4}}", model={str(tiny_model_dir)!r},
                       max_new_tokens=6, temperature=0)
from regexlm import generate
assert generate is regexlm.generate
again = generate("The year is ", r"[0-9]{{4}}", model={str(tiny_model_dir)!r},
                 max_new_tokens=6, temperature=0)
assert again.completion == out.completion
print(out.completion, out.stop_reason, out.tokens_generated)
"""
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    completion, reason, count = proc.stdout.split()
    assert re.fullmatch(r"[0-9]{4}", completion) and reason == "pattern_match"
    assert int(count) >= 1


def test_from_import_form_first():
    proc = _run_python(
        "from regexlm import generate\nimport regexlm, regexlm.generate, inspect\n"
        "assert callable(generate) and generate is regexlm.generate\n"
        "print(list(inspect.signature(generate).parameters))"
    )
    assert proc.returncode == 0, proc.stderr
    assert "max_new_tokens" in proc.stdout and "repetition_penalty" in proc.stdout


def test_generate_accepts_a_generator_and_reuses_loaded_models(tiny_generator, tiny_model_dir):
    from regexlm.generation import generate
    from regexlm.generation.default import shared_generator

    out = generate("Say ", r"(yes|no)", model=tiny_generator, temperature=0)
    assert out.completion in ("yes", "no") and out.stop_reason == "pattern_match"
    first = shared_generator(str(tiny_model_dir))
    assert shared_generator(str(tiny_model_dir)) is first
    # another spelling of the same folder reuses the loaded model
    assert shared_generator(Path(str(tiny_model_dir) + "/")) is first


def test_generate_raises_regex_errors(tiny_generator):
    from regexlm.generation import generate

    with pytest.raises(RegexError):
        generate("x", r"(a", model=tiny_generator)
    with pytest.raises(ValueError, match="^temperature"):
        generate("x", r"a", model=tiny_generator, temperature=-1)


def _cli(argv):
    from regexlm.generation import command

    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_generate_json(tiny_model_dir, capsys):
    code = _cli(
        [
            "generate",
            "The date is ",
            "--pattern",
            r"\d{4}-\d{2}-\d{2}",
            "--max-new-tokens",
            "12",
            "--temperature",
            "0.7",
            "--top-k",
            "10",
            "--top-p",
            "0.9",
            "--repetition-penalty",
            "1.1",
            "--seed",
            "4",
            "--no-stop-after-match",
            "--model",
            str(tiny_model_dir),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", out["completion"]) and out["matched"]
    assert out["tokens_generated"] == len(out["token_ids"]) <= 12


def test_cli_plain_text_and_exit_codes(tiny_model_dir, capsys):
    assert (
        _cli(
            [
                "generate",
                "x",
                "-p",
                "(yes|no)",
                "-p",
                "[0-9]+",
                "--temperature",
                "0",
                "--model",
                str(tiny_model_dir),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.strip()
    assert re.fullmatch(r"yes|no|[0-9]+", printed)
    # a match needs 9 tokens, the budget is 2: not matched, exit 1, advice on stderr
    assert (
        _cli(
            [
                "generate",
                "x",
                "-p",
                r"[0-9]{9}",
                "--max-new-tokens",
                "2",
                "--model",
                str(tiny_model_dir),
            ]
        )
        == 1
    )
    assert "max-new-tokens" in capsys.readouterr().err
    assert _cli(["generate", "x", "-p", "(a", "--model", str(tiny_model_dir)]) == 2
    assert "error" in capsys.readouterr().err


def test_cli_refuses_a_bad_pattern_before_loading_any_model(tmp_path, capsys):
    # The model path does not exist: a model load would fail with a different error.
    missing_model = tmp_path / "no-model-here"
    assert _cli(["generate", "x", "-p", "(?=a)b", "--model", str(missing_model)]) == 2
    err = capsys.readouterr().err
    assert "lookahead" in err and "no-model-here" not in err


def test_default_generator_is_built_once_under_concurrency(tiny_model_dir, monkeypatch):
    import threading

    from regexlm.generation import default
    from regexlm.generation.generator import Generator

    monkeypatch.setattr(default, "_shared", {})
    built = []
    original = Generator.from_pretrained.__func__

    def counting(cls, name_or_path=None, **kwargs):
        built.append(name_or_path)
        return original(cls, name_or_path, **kwargs)

    monkeypatch.setattr(Generator, "from_pretrained", classmethod(counting))
    barrier = threading.Barrier(6)
    results = []

    def worker():
        barrier.wait()
        results.append(default.generate("x", r"(yes|no)", model=str(tiny_model_dir), temperature=0))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert built == [str(tiny_model_dir)]
    assert len(results) == 6 and len({r.completion for r in results}) == 1
    assert results[0].completion in ("yes", "no")
