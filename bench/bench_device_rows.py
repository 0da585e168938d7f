"""Token rows on the model's device: what a state reached for the first time costs a step.

Usage: python bench/bench_device_rows.py [--device cuda] [--tokenizers smollm2,gemma]
       [--steps 64] [--forward-ms 5] [--smollm2-tokenizer DIR] [--gemma-tokenizer DIR]
       [--only NAME] [--json out.json]

A decoding step on an accelerator queues the model's forward pass, then builds the rows of the
states its rows reached for the first time (on the host: the trie walk through the lazy DFA),
appends them to the tables on the device, and queues the sampling step, which reads them. For
every pattern of ``bench/index_patterns.py`` (everyday and heavy), on each tokenizer, compiled
cold on ``--device`` and settled (the exploration ``generate`` runs beside the prompt's forward
pass), the same random walk of ``--steps`` tokens as ``bench/bench_rows.py`` is made twice,
each time from a new compile (the walk is seeded, so both reach the same states):

* **alone**: at each state whose row is not built, ``ensure_rows`` plus the read of the tables
  a step makes (which appends the new row on the device) and a device synchronize: what a new
  state costs a step when nothing runs beside it.
* **beside a forward pass** (on an accelerator only): a stand-in forward pass is queued first (a
  chain of matrix products timed to take about ``--forward-ms`` on the device, queued in a few
  launches, as a model run from a CUDA graph leaves the host free), then the row is built and
  appended and the device synchronized; the **wait** is that time minus the stand-in's own
  (timed alone just before): what a new state adds to a step. A model run eagerly takes host
  time for its launches first, which leaves less of the forward pass to hide a row behind.

Per pattern: new rows, p99 and median of both; per tokenizer, the worst pattern's p99 and the
median over patterns. Rows appended to the device tables and tables sent whole are counted
(``TokenIndex.info``). On the CPU the second walk is skipped (nothing runs beside the host).

Tokenizers: ``--smollm2-tokenizer`` / ``--gemma-tokenizer`` name a saved tokenizer folder (the
GPU check carries them); by default the default model's tokenizer and the Gemma 3 tokenizer the
tests use.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.bench_rows import random_step  # noqa: E402
from bench.environment import cpu_model, git_commit  # noqa: E402
from bench.index_patterns import HEAVY, PATTERNS  # noqa: E402

GEMMA_EOS = [1, 106]  # <eos>, <end_of_turn>


def load_vocab(name: str, folder: str | None):
    from regexlm.index import Vocabulary

    if folder:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    elif name == "smollm2":
        from regexlm.models import load_tokenizer

        tokenizer = load_tokenizer()
    else:
        from tests.index.gemma_tokenizer import load_gemma_tokenizer

        tokenizer = load_gemma_tokenizer()
    config = {"eos_token_id": GEMMA_EOS} if name == "gemma" else None
    return Vocabulary.from_tokenizer(tokenizer, generation_config=config)


class Device:
    """Synchronize and a stand-in forward pass on one device."""

    def __init__(self, name: str, forward_ms: float):
        import torch

        self.torch = torch
        self.device = torch.device(name)
        self.accelerated = self.device.type != "cpu"
        self.launches = 0
        if self.accelerated:
            n = 4096
            self.a = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)  # [n, n]
            self.b = torch.randn(n, n, device=self.device, dtype=torch.bfloat16)  # [n, n]
            self.launches = self._calibrate(forward_ms)

    def sync(self) -> None:
        if self.accelerated:
            self.torch.cuda.synchronize(self.device)

    def queue_forward(self) -> None:
        """Queue the stand-in forward pass (returns before it runs)."""
        for _ in range(self.launches):
            self.torch.mm(self.a, self.b)

    def forward_seconds(self, repeats: int = 5) -> float:
        """The stand-in's own time, queued and waited for (median)."""
        times = []
        for _ in range(repeats):
            self.sync()
            started = time.perf_counter()
            self.queue_forward()
            self.sync()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def _calibrate(self, forward_ms: float) -> int:
        self.launches = 1
        self.forward_seconds(3)  # warm-up
        one = self.forward_seconds()
        return max(1, round(forward_ms / 1e3 / one))


def read_tables(index) -> tuple:
    """What a sampling step reads of the tables (their device copy brought up to date)."""
    tables = index.tables()
    return tables.next_by_class, tables.row_of, tables.class_of


def walk(index, vocab, steps: int, seed: int, device: Device, beside: bool) -> list[float]:
    """Seconds per state reached first: its row built and appended on the device (``beside``:
    behind a queued stand-in forward pass, the stand-in's own time not subtracted)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    eos = np.asarray(vocab.eos_ids)
    times = []
    state = index.start_state
    index.settle()  # the exploration a new pattern's prefill hides (bench_rows.py times it)
    read_tables(index)  # the tables on the device, as a first step has them
    for _ in range(steps):
        if not index._rows.built[state]:
            device.sync()
            started = time.perf_counter()
            if beside:
                device.queue_forward()
            index.ensure_rows([state])
            read_tables(index)  # the new row appended on the device
            device.sync()
            times.append(time.perf_counter() - started)
        state = random_step(index, eos, rng, state)
        if state is None:
            break
    return times


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[int(0.99 * (len(xs) - 1))] if xs else float("nan")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tokenizers", default="smollm2,gemma")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forward-ms", type=float, default=5.0)
    parser.add_argument("--smollm2-tokenizer", default=None)
    parser.add_argument("--gemma-tokenizer", default=None)
    parser.add_argument("--only", default=None, help="one pattern, by name")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    import regexlm
    from regexlm.index.compiler import prepare

    torch.set_num_threads(1)
    device = Device(args.device, args.forward_ms)
    name = torch.cuda.get_device_name(device.device) if device.accelerated else "CPU"
    print(f"Machine: {cpu_model()} + {name}; {datetime.date.today()}; commit {git_commit()}")
    forward = device.forward_seconds() if device.accelerated else float("nan")
    if device.accelerated:
        print(f"stand-in forward pass: {device.launches} launches, {forward * 1e3:.2f} ms\n")
    results = []
    for tok in args.tokenizers.split(","):
        folder = {"smollm2": args.smollm2_tokenizer, "gemma": args.gemma_tokenizer}[tok]
        vocab = load_vocab(tok, folder)
        vocab.tables(device.device)
        prepare(vocab)
        regexlm.compile(r"(?i)\w\d\s(warm|up)", vocab, device=device.device, cache=False)
        print(f"### {tok} (V = {vocab.size})\n")
        print(
            "| pattern | kind | new rows | alone p99 ms | alone median ms | "
            "wait beside forward p99 ms | wait median ms | rows appended | tables sent whole |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for kind, table in (("everyday", PATTERNS), ("heavy", HEAVY)):
            for pname, pattern in table:
                if args.only and pname != args.only:
                    continue
                index = regexlm.compile(pattern, vocab, device=device.device, cache=False)
                alone = walk(index, vocab, args.steps, args.seed, device, beside=False)
                info = index.info
                waits: list[float] = []
                if device.accelerated:
                    forward = device.forward_seconds()
                    again = regexlm.compile(pattern, vocab, device=device.device, cache=False)
                    beside = walk(again, vocab, args.steps, args.seed, device, beside=True)
                    waits = [max(0.0, t - forward) for t in beside]
                row = {
                    "tokenizer": tok,
                    "pattern": pname,
                    "kind": kind,
                    "new_rows": len(alone),
                    "alone_p99_ms": p99(alone) * 1e3,
                    "alone_median_ms": median(alone) * 1e3,
                    "wait_p99_ms": p99(waits) * 1e3,
                    "wait_median_ms": median(waits) * 1e3,
                    "rows_appended": int(info.get("device_rows_sent", 0)),
                    "tables_sent": int(info.get("device_tables_sent", 0)),
                }
                results.append(row)
                print(
                    f"| {pname} | {kind} | {row['new_rows']} | {row['alone_p99_ms']:.2f} | "
                    f"{row['alone_median_ms']:.2f} | {row['wait_p99_ms']:.3f} | "
                    f"{row['wait_median_ms']:.3f} | {row['rows_appended']} | "
                    f"{row['tables_sent']} |"
                )
        mine = [r for r in results if r["tokenizer"] == tok and r["new_rows"]]
        if mine:
            worst = max(mine, key=lambda r: r["alone_p99_ms"])
            line = (
                f"\n{tok}: new row alone, p99 worst pattern {worst['alone_p99_ms']:.2f} ms "
                f"({worst['pattern']}), median over patterns "
                f"{median([r['alone_p99_ms'] for r in mine]):.2f} ms"
            )
            if device.accelerated:
                worst = max(mine, key=lambda r: r["wait_p99_ms"])
                line += (
                    f"; wait beside a {forward * 1e3:.1f} ms forward pass, p99 worst pattern "
                    f"{worst['wait_p99_ms']:.3f} ms ({worst['pattern']}), median over patterns "
                    f"{median([r['wait_p99_ms'] for r in mine]):.3f} ms"
                )
            print(line + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
