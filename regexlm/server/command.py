"""``regexlm serve``: load a model, build the service and run it under uvicorn.

Keys come from ``REGEXLM_API_KEYS`` and ``--api-key-file``. With neither, a random key is made
for this run, printed once (on stderr, with how to set your own) and never written anywhere.
The listening socket is bound before uvicorn starts, so ``--port 0`` works: the line
``regexlm: serving on http://HOST:PORT`` gives the port actually bound. SIGTERM and Ctrl-C stop
taking connections, let the requests in flight finish, then exit.
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket
import sys

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 8000,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` options (shared by ``regexlm serve`` and ``python -m regexlm.server``)."""
    from regexlm.server.limits import Limits

    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME|PATH",
        help="'smollm2' (the embedded default), 'gemma3-270m', a Hugging Face model folder or a .gguf file",
    )
    parser.add_argument(
        "--host", default=DEFAULTS["host"], help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULTS["port"],
        help="port to listen on; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where the model runs (default: cuda when available, else cpu)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "triton", "cuda"),
        help="sampling kernels (default %(default)s)",
    )
    parser.add_argument(
        "--api-key-file",
        default=None,
        metavar="FILE",
        help="file with one API key a line (blank lines and # comments ignored); "
        "adds to REGEXLM_API_KEYS",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=Limits.max_batch_size,
        metavar="N",
        help="most requests decoded together (default %(default)s)",
    )
    parser.add_argument(
        "--max-batch-tokens",
        type=int,
        default=Limits.max_batch_tokens,
        metavar="N",
        help="most prompt tokens in a batch, each row counted as long as the longest prompt "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--max-new-tokens-limit",
        type=int,
        default=Limits.max_new_tokens_limit,
        metavar="N",
        help="largest max_new_tokens a request may ask for (default %(default)s)",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=Limits.queue_size,
        metavar="N",
        help="most requests waiting before new ones get 503 (default %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=Limits.request_timeout,
        metavar="SECONDS",
        help="time limit per request, then 504 (default %(default)s)",
    )
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=Limits.compile_timeout,
        metavar="SECONDS",
        help="time limit to compile a pattern (default %(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=Limits.max_body_bytes,
        metavar="N",
        help="largest request body (default %(default)s)",
    )
    parser.add_argument(
        "--max-prompt-chars",
        type=int,
        default=Limits.max_prompt_chars,
        metavar="N",
        help="longest prompt (default %(default)s)",
    )
    parser.add_argument(
        "--max-patterns",
        type=int,
        default=Limits.max_patterns,
        metavar="N",
        help="most patterns per request (default %(default)s)",
    )
    parser.add_argument(
        "--max-pattern-chars",
        type=int,
        default=Limits.max_pattern_chars,
        metavar="N",
        help="longest pattern (default %(default)s)",
    )
    parser.add_argument(
        "--batch-window",
        type=float,
        default=Limits.batch_window,
        metavar="SECONDS",
        help="longest wait for more requests before starting a batch that is not "
        "full (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="log verbosity (default %(default)s)",
    )
    parser.add_argument(
        "--engine",
        default="hf",
        choices=("hf", "vllm"),
        help="what decodes: 'hf', regexlm's own batches on transformers (--device, "
        "--backend), or 'vllm', vLLM's engine with continuous batching (default %(default)s)",
    )
    from regexlm.vllm.command import add_arguments as add_vllm_arguments

    add_vllm_arguments(parser)
    parser.set_defaults(func=run)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``regexlm`` command's subparsers."""
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP service",
        description="Serve POST /v1/completion/regex (plus GET /health and GET /metrics).",
    )
    add_arguments(parser)
    return parser


def _say(message: str) -> None:
    print(f"regexlm: {message}", file=sys.stderr, flush=True)


def resolve_keys(key_file: str | None) -> tuple[list[str], bool]:
    """The configured keys, or a fresh one; the flag says whether it was generated."""
    from regexlm.server.auth import generate_api_key, keys_from_env, keys_from_file

    keys = keys_from_env()
    if key_file:
        keys += keys_from_file(key_file)
    if keys:
        return keys, False
    return [generate_api_key()], True


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _load_vllm(args: argparse.Namespace):
    """The model and engine class for ``--engine vllm`` (vLLM itself starts with the app)."""
    from regexlm.errors import ModelLoadError
    from regexlm.server.vllm_engine import VllmEngine
    from regexlm.vllm.command import options_from
    from regexlm.vllm.engine import VllmModel

    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(
            f"--engine vllm needs vLLM, which does not import here ({exc}); "
            "scripts/setup.sh installs it"
        ) from exc
    return VllmModel.load(args.model, options_from(args)), VllmEngine


def run(args: argparse.Namespace) -> int:
    """Start the service; return the exit status."""
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from regexlm.server.auth import ENV_VAR, KeyConfigError

    try:
        keys, generated = resolve_keys(args.api_key_file)
    except KeyConfigError as exc:
        _say(f"error: {exc}")
        return 2
    from regexlm.server.limits import Limits

    limits = dict(
        max_new_tokens_limit=args.max_new_tokens_limit,
        max_batch_size=args.max_batch_size,
        max_batch_tokens=args.max_batch_tokens,
        queue_size=args.queue_size,
        request_timeout=args.request_timeout,
        max_body_bytes=args.max_body_bytes,
        max_prompt_chars=args.max_prompt_chars,
        max_patterns=args.max_patterns,
        max_pattern_chars=args.max_pattern_chars,
        compile_timeout=args.compile_timeout,
        batch_window=args.batch_window,
    )
    try:
        Limits(**limits)  # refuse bad numbers before spending time on the model
    except ValueError as exc:
        _say(f"error: {exc}")
        return 2
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        _say(f"error: cannot listen on {args.host}:{args.port}: {exc}")
        return 2

    import uvicorn

    from regexlm.errors import ModelLoadError
    from regexlm.generation import Generator
    from regexlm.models import load_model
    from regexlm.server.app import create_app

    _say(f"loading model {args.model or 'smollm2 (default)'} ...")
    engine_class = None
    try:
        if args.engine == "vllm":
            generator, engine_class = _load_vllm(args)
        else:
            model, tokenizer = load_model(args.model, device=args.device)
            generator = Generator(model, tokenizer, device=args.device, backend=args.backend)
    except ModelLoadError as exc:
        _say(f"error: {exc}")
        sock.close()
        return 2
    except (RuntimeError, ValueError, AssertionError) as exc:  # e.g. --device cuda without CUDA
        _say(f"error: cannot load the model on {args.device or 'the default device'}: {exc}")
        sock.close()
        return 2
    app = create_app(
        generator,
        api_keys=keys,
        model_name=args.model or "smollm2",
        engine_class=engine_class,
        **limits,
    )
    from regexlm.index import native_walk

    # before serving: the C helpers (built once per machine) and, for regexlm's own engine, the
    # vocabulary's tries and their summary, which the first pattern would otherwise pay
    prepare = getattr(generator, "prepare", None)
    if prepare is not None:
        prepare()
    native_walk.library()
    # What is loaded now lives as long as the process: keep it out of the garbage collector's
    # full passes, which would otherwise stall pattern compiles and decode steps.
    gc.collect()
    gc.freeze()

    if generated:
        _say(f"no API key configured; generated one for this run: {keys[0]}")
        _say(f"set your own with {ENV_VAR}=key1,key2 or --api-key-file FILE (one key a line)")
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=None,
    )
    server = uvicorn.Server(config)
    _say(f"serving on http://{shown}:{port}")
    server.run(sockets=[sock])
    return 0
