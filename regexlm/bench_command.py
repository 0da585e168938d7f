"""``regexlm bench``: how fast are compilation and the per-step constraint on this machine.

First the set-up every pattern over the tokenizer shares, paid once per process and vocabulary
(:func:`regexlm.index.compiler.prepare`: the vocabulary's tries, the C helpers, the Unicode
tables); then for each pattern, caches bypassed (nothing of the pattern in memory or on disk):
the time to its first mask (compile, which builds the start state's row), the exploration its
first budget-aware step waits for (``settle``), the index size after it, and the median cost of
one constrained sampling step against one unconstrained sampling step over logits of the
model's vocabulary size, measured in the same run. Only the tokenizer is loaded: the step cost
does not depend on the model's weights.
"""

from __future__ import annotations

import statistics
import time

DEFAULT_PATTERNS = (
    r"\d{4}-\d{2}-\d{2}",
    r"[a-z]+@[a-z]+\.com",
    r"(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}",
    r"[A-Z][a-z ,]{10,80}\.",
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="time pattern compilation and the per-step constraint on this machine"
    )
    parser.add_argument("--pattern", action="append", help="pattern to measure (repeatable)")
    parser.add_argument("--model", default=None, help="model name or path whose tokenizer to use")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100, help="timed sampling steps per pattern")
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "triton", "cuda"])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.set_defaults(func=run)


def _median_seconds(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(args) -> int:
    import torch

    import regexlm
    from regexlm import ops
    from regexlm.index import Vocabulary
    from regexlm.index.compiler import prepare
    from regexlm.models import load_tokenizer
    from regexlm.models.loading import default_device

    device = torch.device(args.device or default_device())
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    vocabulary = Vocabulary.from_tokenizer(load_tokenizer(args.model))
    started = time.perf_counter()
    prepare(vocabulary)
    setup_ms = (time.perf_counter() - started) * 1e3
    batch, vocab = args.batch_size, vocabulary.size
    generator = torch.Generator(device="cpu").manual_seed(0)
    logits = torch.randn(batch, vocab, generator=generator).to(device)  # logits: [B, V]
    ones = torch.ones(batch, device=device)

    def unconstrained():
        probs = torch.softmax(logits, dim=-1)
        torch.multinomial(probs, 1)

    baseline = _median_seconds(unconstrained, args.steps, sync)
    print(f"device {device}, vocabulary {vocab}, batch {batch}, backend {args.backend}")
    print(
        "set-up, once per process and vocabulary (tries, C helpers, Unicode tables): "
        f"{setup_ms:.0f} ms"
    )
    print(f"unconstrained sampling step: {baseline * 1e6:9.1f} us")
    print(
        f"{'pattern':<40} {'first mask ms':>13} {'explore ms':>10} {'states':>7} {'classes':>7} "
        f"{'MiB':>7} {'step us':>9} {'ratio':>6}"
    )
    for pattern in args.pattern or DEFAULT_PATTERNS:
        started = time.perf_counter()
        index = regexlm.compile(pattern, vocabulary, device=device, cache=False)
        index.mask(index.start_state)
        first_ms = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        index.settle()
        explore_ms = (time.perf_counter() - started) * 1e3
        states = torch.full((batch,), index.start_state, dtype=torch.int32, device=device)
        budgets = torch.full((batch,), 64, dtype=torch.int32, device=device)
        seen = torch.zeros(batch, vocab, dtype=torch.bool, device=device)
        top_k = torch.full((batch,), 50, dtype=torch.int32, device=device)

        def constrained(states=states, budgets=budgets, top_k=top_k, seen=seen, index=index):
            ops.sample_step(
                logits,
                states,
                budgets,
                ones,
                top_k,
                ones,
                ones,
                seen,
                index,
                seed=0,
                backend=args.backend,
            )

        step = _median_seconds(constrained, args.steps, sync)
        shown = pattern if len(pattern) <= 40 else pattern[:37] + "..."
        print(
            f"{shown:<40} {first_ms:13.2f} {explore_ms:10.2f} {index.num_states:7d} "
            f"{index.num_classes:7d} {index.nbytes / 2**20:7.2f} {step * 1e6:9.1f} "
            f"{step / baseline:6.2f}"
        )
    return 0
