"""End-to-end generation speed on the default model (SmolLM2-135M-Instruct), CPU by default.

Three measurements, in one process:

1. **First request**: a fresh process, a pattern never compiled (the index disk cache is switched
   off for it), split into compile, prefill and decode as :class:`Completion.timings` reports
   them; then the same request again, warm.
2. **Constrained against unconstrained tokens/s**, one row, the same prompts, the same number of
   steps, runs interleaved. *Unconstrained* is the plain loop anyone would write without a
   constraint: the same model calls (prefill, then one token at a time against the KV cache) and
   transformers' own repetition-penalty, temperature, top-k and top-p processors, then
   ``torch.multinomial``. *Constrained* is :meth:`Generator.generate_batch` with
   ``stop_after_match=False`` on patterns that let text run for the whole budget. The overhead
   per token is the ratio of the median decode time per token (prefill excluded on both sides).
   The step kernel alone (:func:`regexlm.ops.sample_step` on one row) is timed too.
3. **Batch throughput** at 1, 4 and 16 rows: generated tokens per second of wall time,
   prefill included, rows with mixed patterns.

Run: ``python bench/bench_generate.py`` (``--record`` writes the section of bench/RESULTS.md).
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

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.environment import cpu_model, git_commit  # noqa: E402

HEADING = "## Generation (bench/bench_generate.py)"
SAMPLING = dict(top_k=50, top_p=0.9, temperature=0.8, repetition_penalty=1.2)
PROMPTS = [
    "This is a sample prompt",
    "Write one sentence about the sea:",
    "List some numbers:",
]
# Patterns that allow a long text, so that every run spends its whole budget.
LONG_PATTERNS = {
    "sentence": r"[A-Za-z ,.']+",
    "no newline": r"[^\n]*",
    "numbers": r"( ?[0-9]+,)* ?[0-9]+",
}
BATCH_PATTERNS = [r"[A-Za-z ,.']+", r"[^\n]*", r"( ?[0-9]+,)* ?[0-9]+", r"(\d{4}-\d{2}-\d{2} ?)+"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per row (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per prompt")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--record", action="store_true", help="write the section of RESULTS.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from regexlm.generation import GenerationRequest, Generator
    from regexlm.models import load_model

    started = time.perf_counter()
    model, tokenizer = load_model(device=args.device)
    load_s = time.perf_counter() - started
    generator = Generator(model, tokenizer, device=args.device)

    lines = [HEADING, ""]
    lines += _environment(args, load_s)
    lines += _first_request(generator, GenerationRequest)
    lines += _overhead(generator, GenerationRequest, args)
    lines += _step_kernel(generator)
    lines += _batches(generator, GenerationRequest, args)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        _record(ROOT / "bench" / "RESULTS.md", text)
    return 0


# --- 1. first request -------------------------------------------------------------------------


def _first_request(generator, Request) -> list[str]:
    import regexlm.index.cache as index_cache

    request = Request("The date today is ", r"\d{4}-\d{2}-\d{2}", max_new_tokens=12, seed=0)
    index_cache.disk_enabled = False  # a true first compile, whatever an earlier run stored
    try:
        cold = generator.generate_batch([request])[0]
    finally:
        index_cache.disk_enabled = True
    warm = generator.generate_batch([request])[0]
    rows = [
        "### First request",
        "",
        f'`generate("The date today is ", r"\\d{{4}}-\\d{{2}}-\\d{{2}}", max_new_tokens=12)` '
        f"-> `{cold.completion}` ({cold.tokens_generated} tokens, {cold.stop_reason})",
        "",
        "| request | compile | prefill | decode | total |",
        "|---|---|---|---|---|",
    ]
    for name, result in (
        ("first (cold: pattern never compiled, first forward)", cold),
        ("second (warm: index cached)", warm),
    ):
        t = result.timings
        total = t["compile_s"] + t["prefill_s"] + t["decode_s"]
        rows.append(
            f"| {name} | {_ms(t['compile_s'])} | {_ms(t['prefill_s'])} | "
            f"{_ms(t['decode_s'])} | {_ms(total)} |"
        )
    return rows + [""]


# --- 2. constrained against unconstrained -----------------------------------------------------


def _overhead(generator, Request, args) -> list[str]:
    n = args.tokens
    for pattern in LONG_PATTERNS.values():  # compile outside the timed runs
        generator.compile(pattern)
    clock = _ForwardClock(generator.model)
    # warm-up, both paths
    _unconstrained(generator, PROMPTS[0], n, seed=0)
    generator.generate_batch(
        [
            Request(
                PROMPTS[0], r"[^\n]*", max_new_tokens=n, stop_after_match=False, seed=0, **SAMPLING
            )
        ]
    )
    # Each constrained run is paired with an unconstrained run of the same prompt just before
    # it, so that a load change on a shared machine hits both sides of a ratio alike.
    base: list[tuple[float, float]] = []  # (s / token, s outside the model / token)
    ours: dict[str, list[tuple[float, float]]] = {name: [] for name in LONG_PATTERNS}
    ratios: dict[str, list[float]] = {name: [] for name in LONG_PATTERNS}
    tokens: dict[str, int] = {name: 0 for name in LONG_PATTERNS}
    for repeat in range(args.repeats):
        for prompt in PROMPTS:
            for name, pattern in LONG_PATTERNS.items():
                clock.reset()
                per_base = _unconstrained(generator, prompt, n, seed=repeat)
                base.append((per_base, per_base - clock.decode_seconds / n))
                request = Request(
                    prompt,
                    pattern,
                    max_new_tokens=n,
                    stop_after_match=False,
                    seed=repeat,
                    **SAMPLING,
                )
                clock.reset()
                result = generator.generate_batch([request])[0]
                count = result.tokens_generated
                if count:
                    per = result.timings["decode_s"] / count
                    ours[name].append((per, per - clock.decode_seconds / count))
                    ratios[name].append(per / per_base)
                    tokens[name] += count
    clock.remove()
    median = statistics.median
    rows = [
        "### Constrained against unconstrained, one row",
        "",
        f"{len(PROMPTS)} prompts x {args.repeats} repeats, up to {n} new tokens, sampling "
        f"top_k=50, top_p=0.9, temperature=0.8, repetition_penalty=1.2, "
        "`stop_after_match=False`. Decode time per token, prefill excluded; *outside the model* "
        "is that time minus the forward passes (sampling, masks, bookkeeping). Overhead is the "
        "median ratio over runs paired with an unconstrained run of the same prompt just before.",
        "",
        "| run | ms / token | tokens / s | ms / token outside the model | overhead per token |",
        "|---|---|---|---|---|",
        f"| unconstrained (same model calls, transformers' processors + multinomial) | "
        f"{median(b for b, _ in base) * 1e3:.2f} | {1 / median(b for b, _ in base):.1f} | "
        f"{median(o for _, o in base) * 1e3:.2f} | - |",
    ]
    for name, pattern in LONG_PATTERNS.items():
        per = median(t for t, _ in ours[name])
        outside = median(o for _, o in ours[name])
        rows.append(
            f"| constrained `{pattern}` ({name}, {tokens[name]} tokens) | "
            f"{per * 1e3:.2f} | {1 / per:.1f} | {outside * 1e3:.2f} | "
            f"{(median(ratios[name]) - 1) * 100:+.1f} % |"
        )
    return rows + [""]


class _ForwardClock:
    """Seconds spent inside the model's forward passes of one token (decode steps only)."""

    def __init__(self, model):
        self.decode_seconds = 0.0
        self._started = None
        self._handles = [
            model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _pre(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._started = time.perf_counter() if ids is not None and ids.shape[1] == 1 else None

    def _post(self, module, args, kwargs, output):
        if self._started is not None:
            self.decode_seconds += time.perf_counter() - self._started

    def reset(self):
        self.decode_seconds = 0.0

    def remove(self):
        for handle in self._handles:
            handle.remove()


def _unconstrained(generator, prompt: str, n: int, seed: int) -> float:
    """Seconds per token of a plain sampled KV-cache decode loop (no constraint)."""
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    model = generator.model
    processors = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(SAMPLING["repetition_penalty"]),
            TemperatureLogitsWarper(SAMPLING["temperature"]),
            TopKLogitsWarper(SAMPLING["top_k"]),
            TopPLogitsWarper(SAMPLING["top_p"]),
        ]
    )
    from regexlm.generation.model_calls import _cache_argument, _cache_of

    rng = torch.Generator(device=generator.device).manual_seed(seed)
    ids = torch.tensor([generator.encode_prompt(prompt)], device=generator.device)  # [1, L]
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache, logits = _cache_of(out), out.logits[:, -1, :]  # logits: [1, V]
        started = time.perf_counter()
        for step in range(n):
            scores = processors(ids, logits.float())  # [1, V]
            token = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=rng)  # [1, 1]
            token.item()  # the host needs the token, as a streaming server does
            ids = torch.cat([ids, token], dim=1)
            if step == n - 1:
                break
            out = model(input_ids=token, use_cache=True, **{_cache_argument(model): cache})
            cache, logits = _cache_of(out), out.logits[:, -1, :]
        return (time.perf_counter() - started) / n


def _step_kernel(generator) -> list[str]:
    """The sampling step alone, one row, over the model's vocabulary: constrained step of each
    pattern against a step whose table allows every token."""
    from regexlm import ops

    V = generator.vocab_size
    logits = torch.randn(1, V, generator=torch.Generator().manual_seed(0))
    args = dict(
        budgets=torch.tensor([32], dtype=torch.int32),
        temperature=torch.tensor([0.8]),
        top_k=torch.tensor([50], dtype=torch.int32),
        top_p=torch.tensor([0.9]),
        repetition_penalty=torch.tensor([1.2]),
        seen=torch.zeros(1, V, dtype=torch.bool),
    )
    everything = ops.IndexTables(
        next_by_class=torch.zeros((1, 1), dtype=torch.int32),
        class_of=torch.zeros(V, dtype=torch.int32),
        min_tokens=torch.zeros(1, dtype=torch.int32),
    )
    rows = [
        f"### The sampling step alone (one row, V = {V})",
        "",
        "| table | µs / step |",
        "|---|---|",
    ]
    tables = [("allows every token", everything, 0)]
    for pattern in LONG_PATTERNS.values():
        index = generator.compile(pattern)
        tables.append((f"`{pattern}`", index, index.start_state))
    for name, table, state in tables:
        states = torch.tensor([state], dtype=torch.int32)
        times = []
        for i in range(60):
            started = time.perf_counter()
            ops.sample_step(
                logits,
                states,
                args["budgets"],
                args["temperature"],
                args["top_k"],
                args["top_p"],
                args["repetition_penalty"],
                args["seen"],
                table,
                seed=i,
                step=i,
                backend="torch",
            )
            times.append(time.perf_counter() - started)
        rows.append(f"| {name} | {statistics.median(times[10:]) * 1e6:.0f} |")
    return rows + [""]


# --- 3. batches -------------------------------------------------------------------------------


def _batches(generator, Request, args) -> list[str]:
    n = args.tokens
    rows = [
        "### Batch throughput",
        "",
        f"Rows with mixed patterns ({', '.join(f'`{p}`' for p in BATCH_PATTERNS)}), "
        f"up to {n} new tokens each, `stop_after_match=False`, same sampling. Wall time "
        "includes prefill; best of two runs.",
        "",
        "| rows | tokens | wall s | tokens / s |",
        "|---|---|---|---|",
    ]
    for size in (1, 4, 16):
        requests = [
            Request(
                PROMPTS[i % len(PROMPTS)],
                BATCH_PATTERNS[i % len(BATCH_PATTERNS)],
                max_new_tokens=n,
                stop_after_match=False,
                seed=i,
                **SAMPLING,
            )
            for i in range(size)
        ]
        best = None
        for _ in range(2):
            started = time.perf_counter()
            results = generator.generate_batch(requests)
            wall = time.perf_counter() - started
            count = sum(r.tokens_generated for r in results)
            if best is None or count / wall > best[0] / best[1]:
                best = (count, wall)
        rows.append(f"| {size} | {best[0]} | {best[1]:.2f} | {best[0] / best[1]:.1f} |")
    return rows + [""]


# --- report -----------------------------------------------------------------------------------


def _environment(args, load_s: float) -> list[str]:
    import transformers

    import regexlm

    commit, cpu = git_commit(), cpu_model()
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- version: regexlm {regexlm.__version__} (commit {commit}), torch {torch.__version__}, "
        f"transformers {transformers.__version__}",
        f"- machine: {cpu}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"device {args.device}",
        "- model: SmolLM2-135M-Instruct (fp32), loaded in "
        f"{load_s:.1f} s; backend of the sampling step: torch reference",
        "",
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


def _record(path: Path, section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it); other sections are kept."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(HEADING)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        end = old.find("\n## ", start + len(HEADING))
        new = old[:start] + section + ("" if end < 0 else old[end + 1 :])
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
