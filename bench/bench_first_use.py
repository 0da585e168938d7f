"""A new pattern's first token: the index's exploration beside the prompt's forward pass.

Compile builds the start row only; the exploration that makes ``min_tokens`` exact (or tightens
its bounds) runs at the index's first use, which ``generate`` starts on a worker thread beside
the prefill. This measures what that saves a user: time from ``compile`` to the first generated
token for patterns never seen before (``cache=False``), on the default model (SmolLM2-135M,
CPU), two ways interleaved in one run:

* **in turn**: ``compile`` then ``settle()`` then ``generate`` (the exploration before the
  forward pass, as compile did it before);
* **beside**: ``compile`` then ``generate`` with the exploration beside the prefill (what
  ``generate`` does with the model on an accelerator; forced here on the CPU).

On the CPU the prefill already uses every core; this is the measurement behind leaving the
exploration to the first step there (:func:`regexlm.index.settler.worth_overlapping`).

Medians per pattern over ``--rounds`` rounds, and the ratio.

Run: ``python bench/bench_first_use.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.environment import cpu_model, git_commit  # noqa: E402
from bench.index_patterns import HEAVY, PATTERNS  # noqa: E402

PROMPT = "Answer with the value only. The value is "
NAMES = ["date", "email", "IPv4", "UUID", "URL", "JSON object (hand)", "JSON schema (8 fields)"]
NAMES += [r"\w{1,50}", r"\w email", "markdown list"]


def first_token(generator, pattern: str, settle_first: bool) -> float:
    import regexlm
    from regexlm.generation import GenerationRequest, decode_loop

    # "beside" as on an accelerator (on the CPU, generate itself does not overlap)
    decode_loop.worth_overlapping = lambda device: not settle_first

    seen: list[float] = []
    started = time.perf_counter()
    index = regexlm.compile(pattern, generator.vocabulary, cache=False)
    if settle_first:
        index.settle()
    request = GenerationRequest(PROMPT, pattern, max_new_tokens=1, temperature=0)
    generator.generate_batch(
        [request], indexes=[index], on_token=lambda *_: seen.append(time.perf_counter())
    )
    return (seen[0] if seen else time.perf_counter()) - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    import torch

    from regexlm.generation import Generator
    from regexlm.models import load_model

    model, tokenizer = load_model(device="cpu")
    generator = Generator(model, tokenizer)
    table = dict(PATTERNS + HEAVY)
    first_token(generator, r"(?i)\w\d\s(warm|up)", False)  # first-call costs of the process
    print(
        f"Machine: {cpu_model()}, torch threads {torch.get_num_threads()}; "
        f"{datetime.date.today()}; commit {git_commit()}\n"
    )
    print("| pattern | in turn ms | beside ms | beside / in turn |")
    print("|---|---|---|---|")
    ratios = []
    for name in NAMES:
        turn, beside = [], []
        for _ in range(args.rounds):
            turn.append(first_token(generator, table[name], True))
            beside.append(first_token(generator, table[name], False))
        a, b = statistics.median(turn), statistics.median(beside)
        ratios.append(b / a)
        print(f"| {name} | {a * 1e3:.1f} | {b * 1e3:.1f} | {b / a:.2f} |", flush=True)
    print(f"\nmedian ratio beside / in turn: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
