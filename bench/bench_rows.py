"""Lazy token index figures: first mask cold, a new state's row, a built state's mask, memory.

Usage: python bench/bench_rows.py [--tokenizers smollm2,gemma] [--steps 64] [--seed 0]

For every pattern of ``bench/index_patterns.py`` (everyday ``PATTERNS`` and ``HEAVY`` ones), on
each tokenizer, single-threaded on the CPU:

* **first mask, cold**: ``regexlm.compile`` with every cache off (the index caches and the
  automaton) plus the start state's bitmask row: what a new pattern costs before its first
  mask.
* **explored**: then the exploration compile leaves for the first use
  (``TokenIndex.settle``: exact ``min_tokens`` for small patterns, else a descent that
  tightens the bounds), which a decode step waits for: first mask plus this is what a new
  pattern costs before its first budget-aware step. ``generate`` runs it beside the
  prompt's forward pass on an accelerator, the service in its compile pool.

  Per-vocabulary set-up (the vocabulary and its trie) is made once before and not counted;
  first-call costs of the process (imports, the Unicode tables of ``\\w \\d \\s``) are
  paid by a warm-up pattern.
* **new row**: a random walk of ``--steps`` tokens; each step whose state has no row yet times
  ``ensure_rows`` for it (what decoding pays when it reaches a state first); p99 and median.
* **mask**: the bitmask row of a state already built (``bitmask_rows``, a new tensor), p99;
  **fill**: the same written into a buffer kept across steps (``fill_bitmask``, as the
  peers' ``fill_next_token_bitmask``), p99; **view**: the same as a read-only view of the
  cached row (``TokenIndex.mask``, nothing copied), p99; each where the version has it.
* **memory**: ``TokenIndex.nbytes`` after the walk, against the target ``4 V + 1 MB``.
* **refused**: a pattern that raised instead of compiling.

Prints a Markdown table; machine, date and commit head it.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.environment import cpu_model, git_commit  # noqa: E402
from bench.index_patterns import HEAVY, PATTERNS  # noqa: E402


def load_vocab(name: str):
    from regexlm.index import Vocabulary

    if name == "smollm2":
        from regexlm.models import load_tokenizer

        return Vocabulary.from_tokenizer(load_tokenizer())
    from tests.index.gemma_tokenizer import load_gemma_tokenizer

    return Vocabulary.from_tokenizer(
        load_gemma_tokenizer(), generation_config={"eos_token_id": [1, 106]}
    )


def cold_first_mask(pattern: str, vocab) -> tuple[float, object]:
    import regexlm

    started = time.perf_counter()
    index = regexlm.compile(pattern, vocab, cache=False)
    index.bitmask_rows([index.start_state])
    return time.perf_counter() - started, index


def explore(index) -> float:
    started = time.perf_counter()
    index.settle()
    return time.perf_counter() - started


def walk(index, vocab, steps: int, rng) -> tuple[list[float], ...]:
    import numpy as np
    import torch

    eos = np.asarray(vocab.eos_ids)
    new_rows, masks, fills, views = [], [], [], []
    fill = getattr(index, "fill_bitmask", None)
    view = getattr(index, "mask", None)
    buf = torch.zeros(1, (vocab.size + 31) // 32, dtype=torch.int32)
    state = index.start_state
    for _ in range(steps):
        if not index._rows.built[state]:
            started = time.perf_counter()
            index.ensure_rows([state])
            new_rows.append(time.perf_counter() - started)
        started = time.perf_counter()
        index.bitmask_rows([state])
        masks.append(time.perf_counter() - started)
        if fill is not None:
            index.allowed_tokens(state)  # (the caches as cold as the mask's were)
            started = time.perf_counter()
            fill(buf, [state])
            fills.append(time.perf_counter() - started)
        if view is not None:
            index.allowed_tokens(state)  # (the caches as cold as the mask's were)
            started = time.perf_counter()
            view(state)
            views.append(time.perf_counter() - started)
        state = random_step(index, eos, rng, state)
        if state is None:
            break
    return new_rows, masks, fills, views


def random_step(index, eos, rng, state: int) -> int | None:
    """The state after a random allowed token other than end-of-sequence (``eos``, an array of
    ids), or None where there is none."""
    import numpy as np

    tokens = index.allowed_tokens(state).numpy()
    tokens = tokens[~np.isin(tokens, eos)]
    if tokens.size == 0:
        return None
    return index.next_state(state, int(rng.choice(tokens)))


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[int(0.99 * (len(xs) - 1))] if xs else float("nan")


def main() -> None:
    import numpy as np
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizers", default="smollm2,gemma")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import regexlm
    from regexlm.index.compiler import prepare

    print(
        f"Machine: {cpu_model()}, torch threads 1; {datetime.date.today()}; commit {git_commit()}"
    )
    print(f"regexlm {regexlm.__version__}, index mode {os.environ.get('REGEXLM_INDEX', 'auto')}\n")
    for tok in args.tokenizers.split(","):
        vocab = load_vocab(tok)
        vocab.tables("cpu")
        prepare(vocab)  # per-vocabulary set-up: tries and C helpers, made once
        cold_first_mask(r"(?i)\w\d\s(warm|up)", vocab)  # process first-call costs
        gc.freeze()  # as `regexlm serve` does once its model is loaded
        target = 4 * vocab.size + (1 << 20)
        print(f"### {tok} (V = {vocab.size}; memory target 4 V + 1 MB = {target / 1e6:.2f} MB)\n")
        print(
            "| pattern | kind | first mask cold ms | + explored ms | exact | new rows | "
            "new row p99 ms | new row median ms | mask p99 us | fill p99 us | view p99 us | "
            "memory MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        colds = {"everyday": [], "heavy": []}
        explored = {"everyday": [], "heavy": []}
        worst_row, over, mask_p99s, fill_p99s, view_p99s = [], [], [], [], []
        for kind, table in (("everyday", PATTERNS), ("heavy", HEAVY)):
            for name, pattern in table:
                try:
                    cold, index = cold_first_mask(pattern, vocab)
                except Exception as exc:  # a refusal is a result
                    print(f"| {name} | {kind} | refused: {type(exc).__name__} | | | | | | | | | |")
                    continue
                settle = explore(index)
                explored[kind].append((cold + settle) * 1e3)
                rng = np.random.default_rng(args.seed)
                rows, masks, fills, views = walk(index, vocab, args.steps, rng)
                colds[kind].append(cold * 1e3)
                worst_row.append(p99(rows) * 1e3 if rows else 0.0)
                mask_p99s.append(p99(masks) * 1e6)
                if fills:
                    fill_p99s.append(p99(fills) * 1e6)
                if views:
                    view_p99s.append(p99(views) * 1e6)
                mem = index.nbytes
                if mem > target:
                    over.append(name)
                row_p99 = f"{p99(rows) * 1e3:.2f}" if rows else "-"
                row_med = f"{statistics.median(rows) * 1e3:.2f}" if rows else "-"
                print(
                    f"| {name} | {kind} | {cold * 1e3:.2f} | {settle * 1e3:.2f} | "
                    f"{'yes' if index.exact else 'no'} | "
                    f"{len(rows)} | {row_p99} | {row_med} | {p99(masks) * 1e6:.0f} | "
                    f"{f'{p99(fills) * 1e6:.0f}' if fills else '-'} | "
                    f"{f'{p99(views) * 1e6:.1f}' if views else '-'} | "
                    f"{mem / 1e6:.2f} |",
                    flush=True,
                )
        allc = colds["everyday"] + colds["heavy"]
        alle = explored["everyday"] + explored["heavy"]
        print(
            f"\n{tok}: first mask cold, median over everyday patterns "
            f"{statistics.median(colds['everyday']):.2f} ms, worst over all {max(allc):.2f} ms; "
            f"first mask + exploration, median {statistics.median(explored['everyday']):.2f} ms, "
            f"worst {max(alle):.2f} ms; "
            f"new-row p99 worst pattern {max(worst_row):.2f} ms; "
            f"mask p99 median over patterns {statistics.median(mask_p99s):.0f} us, "
            f"worst {max(mask_p99s):.0f} us; "
            + (
                f"fill p99 median {statistics.median(fill_p99s):.0f} us, "
                f"worst {max(fill_p99s):.0f} us; "
                if fill_p99s
                else ""
            )
            + (
                f"view p99 median {statistics.median(view_p99s):.1f} us, "
                f"worst {max(view_p99s):.0f} us, "
                f"patterns over 10 us: {sum(v > 10 for v in view_p99s)}; "
                if view_p99s
                else ""
            )
            + f"over the memory target: {', '.join(over) or 'none'}\n"
        )


if __name__ == "__main__":
    main()
