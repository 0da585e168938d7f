"""``regexlm generate``: complete one prompt under a pattern from the command line.

Prints the completion (or, with ``--json``, the whole :class:`Completion` as JSON). Exit status:
0 when the completion matches, 1 when it does not (``token_limit`` without a match), 2 for a bad
argument or pattern. Imports stay inside :func:`run`, so ``regexlm --help`` loads no torch.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "generate",
        help="complete a prompt so that the completion matches a regular expression",
        description="Complete PROMPT so that the completion fully matches --pattern "
        "(Python re syntax). Repeat --pattern to allow any of several patterns.",
    )
    parser.add_argument("prompt", help="the text to complete")
    parser.add_argument(
        "--pattern",
        "-p",
        action="append",
        required=True,
        metavar="REGEX",
        help="regular expression the completion must match (repeatable: any of them)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=5, metavar="N", help="token budget (default: 5)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature; 0 is greedy (default: 1.0)",
    )
    parser.add_argument("--top-k", type=int, default=50, help="top-k, 0 disables (default: 50)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus top-p (default: 1.0)")
    parser.add_argument(
        "--repetition-penalty",
        type=float,
        default=1.0,
        help="penalty over prompt and generated ids, 1 disables (default: 1.0)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")
    parser.add_argument(
        "--no-stop-after-match",
        dest="stop_after_match",
        action="store_false",
        help="keep generating after the first match, until end-of-sequence, "
        "a dead end or the budget",
    )
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME|PATH",
        help="model name or local path (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from regexlm.automata import compile_regex
    from regexlm.errors import RegexlmError
    from regexlm.generation.default import generate

    pattern = args.pattern[0] if len(args.pattern) == 1 else list(args.pattern)
    try:
        # Refuse a bad pattern before spending seconds on loading the model.
        compile_regex(pattern)
        result = generate(
            args.prompt,
            pattern,
            model=args.model,
            max_new_tokens=args.max_new_tokens,
            stop_after_match=args.stop_after_match,
            top_k=args.top_k,
            top_p=args.top_p,
            temperature=args.temperature,
            repetition_penalty=args.repetition_penalty,
            seed=args.seed,
        )
    except (RegexlmError, ValueError) as exc:
        print(f"regexlm generate: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(result.completion)
        if not result.matched:
            print(
                f"regexlm generate: no match within {args.max_new_tokens} tokens "
                f"(stop_reason={result.stop_reason}); raise --max-new-tokens",
                file=sys.stderr,
            )
    return 0 if result.matched else 1
