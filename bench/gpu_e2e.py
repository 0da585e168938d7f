"""End to end: one `Generator` batch per sampling backend, every output checked against `re`.

A tiny random Llama (`regexlm.models.build_tiny_llama`) over a real tokenizer decodes one mixed
batch (several patterns, greedy and seeded sampled rows, top-k, top-p, penalties, both stop
rules) with each backend in turn. Every completion must obey the contract: a ``pattern_match``
completion fully matches one of its patterns (``re.fullmatch``) and reports the right pattern
index; every other completion is still viable (its bytes are a prefix of some match). The rows'
seeds are fixed and every backend computes the same numbers from them, so the tokens are also
compared with the torch backend's, row by row.

    PYTHONPATH=. python bench/gpu_e2e.py --device cuda --backends torch,triton,cuda
    PYTHONPATH=. python bench/gpu_e2e.py --device cpu --backends torch      # logic check

``--tokenizer`` names a tokenizer folder (``save_pretrained`` output) for machines without the
default model's package; without it the default model's tokenizer is loaded. Prints one line per
backend and a JSON summary line last (``E2E {...}``); exit status 1 on any violation or error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

PATTERNS = [
    r"\d{4}-\d{2}-\d{2}",
    r"[a-z]+@[a-z]+\.com",
    r"\(\d{3}\) \d{3}-\d{4}",
    r"(red|green|blue)",
    r"(?i)(yes|no)",
    r"[αβγ]+ (été|naïve|日本)",
    r"-?[0-9]+(\.[0-9]+)?",
    r"[A-Z][a-z]+( [A-Z][a-z]+)*",
    r"[0-9a-f]{8}",
    [r"(true|false)", r"null"],
]
PROMPTS = ["", "The date today is ", "Contact: ", "日本語のテキスト", "x"]


def requests(n: int):
    from regexlm.generation import GenerationRequest

    out = []
    for i in range(n):
        greedy = i % 4 == 0
        out.append(
            GenerationRequest(
                PROMPTS[i % len(PROMPTS)],
                PATTERNS[i % len(PATTERNS)],
                max_new_tokens=4 + i % 11,
                stop_after_match=bool(i % 3),
                temperature=0.0 if greedy else [0.7, 1.0, 1.8][i % 3],
                top_k=[0, 5, 50][i % 3],
                top_p=[1.0, 0.9, 0.6][(i // 3) % 3],
                repetition_penalty=[1.0, 1.3][i % 2],
                seed=None if greedy else 1000 + i,
            )
        )
    return out


def violations(request, completion, dfa, token_bytes) -> list[str]:
    """What is wrong with one completion, if anything."""
    patterns = request.pattern if isinstance(request.pattern, list) else [request.pattern]
    text = completion.completion
    data = b"".join(token_bytes[t] for t in completion.token_ids)
    bad = []
    if completion.stop_reason == "pattern_match" or completion.matched:
        hits = [i for i, p in enumerate(patterns) if re.fullmatch(p, text)]
        if not hits:
            bad.append(f"reported a match, but re.fullmatch fails on {text!r}")
        elif completion.pattern_index != hits[0]:
            bad.append(f"pattern_index {completion.pattern_index}, re says {hits[0]}")
    elif not dfa.is_viable(data):
        bad.append(f"not viable: {data!r}")
    if completion.tokens_generated > request.max_new_tokens:
        bad.append(f"{completion.tokens_generated} tokens > max_new_tokens")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backends", default="torch,triton,cuda")
    ap.add_argument(
        "--tokenizer", default=None, help="a tokenizer folder (default model's if none)"
    )
    ap.add_argument("--rows", type=int, default=40)
    args = ap.parse_args(argv)

    import torch

    from regexlm.automata import compile_regex
    from regexlm.generation import Generator
    from regexlm.models import build_tiny_llama, load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    model = build_tiny_llama(tokenizer, seed=0).to(args.device)
    batch = requests(args.rows)
    dfas = {}
    for r in batch:
        key = tuple(r.pattern) if isinstance(r.pattern, list) else r.pattern
        if key not in dfas:
            dfas[key] = compile_regex(r.pattern)
    summary, reference, failed = {}, None, False
    for backend in args.backends.split(","):
        gen = Generator(model, tokenizer, device=args.device, backend=backend)
        try:
            gen.generate_batch(batch[:2])  # warm-up: kernel compilation, index building
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            outs = gen.generate_batch(batch)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
        except Exception as exc:  # report and go on with the next backend
            print(f"{backend:7s} ERROR {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            summary[backend] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            failed = True
            continue
        bad = []
        for i, (r, c) in enumerate(zip(batch, outs, strict=True)):
            key = tuple(r.pattern) if isinstance(r.pattern, list) else r.pattern
            bad += [
                f"row {i} ({r.pattern!r}): {v}"
                for v in violations(r, c, dfas[key], gen.vocabulary.token_bytes)
            ]
        ids = [c.token_ids for c in outs]
        if reference is None:
            reference = ids
        same = sum(a == b for a, b in zip(ids, reference, strict=True))
        matched = sum(c.matched for c in outs)
        tokens = sum(c.tokens_generated for c in outs)
        summary[backend] = dict(
            rows=len(outs), violations=len(bad), matched=matched, same_tokens_as_first=same,
            tokens=tokens, seconds=round(seconds, 3),
        )  # fmt: skip
        failed |= bool(bad)
        print(
            f"{backend:7s} rows {len(outs)}  violations {len(bad)}  matched {matched}  "
            f"same tokens as {args.backends.split(',')[0]}: {same}/{len(outs)}  "
            f"{tokens} tokens in {seconds:.2f} s",
            flush=True,
        )
        for line in bad[:5]:
            print("   ", line)
    print("E2E " + json.dumps(summary), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
