"""Load test of the HTTP service on loopback: batching against one request at a time.

Starts ``python -m regexlm.server`` twice on 127.0.0.1 (once with ``--max-batch-size 32``, once
with ``--max-batch-size 1``), and for each drives 1, 8 and 32 concurrent clients in a closed loop
(each client sends its next request as soon as the previous one is answered) for a fixed time.
Reports requests/s, generated tokens/s, p50 and p99 latency and the error count per run, and the
speed-up of batching at the highest concurrency. With ``--write`` it records the table under the
heading "HTTP service (bench/bench_server.py)" in ``bench/RESULTS.md``, replacing an earlier
version of that section only.

    .venv/bin/python bench/bench_server.py --write
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.environment import cpu_model, git_commit, write_results_section  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## HTTP service (bench/bench_server.py)"
KEY = "bench-key"
URL = "/v1/completion/regex"

WORKLOAD = [
    ("My phone number is ", r"\d{3}-\d{4}"),
    ("Contact me at ", r"[a-z]{3,10}@[a-z]{3,8}\.com"),
    ("Is the sky blue? Answer: ", r"(yes|no)"),
    ("The date today is ", r"\d{4}-\d{2}-\d{2}"),
    ("My favourite colour is ", r"(red|green|blue|yellow)"),
    ("The price is $", r"\d{1,4}\.\d{2}"),
    ("Name a city: ", r"[A-Z][a-z]{3,9}"),
    ("Count: ", r"\d+( \d+){2,5}"),
]


@dataclass
class Run:
    label: str
    max_batch_size: int
    concurrency: int
    seconds: float
    latencies: list[float]
    tokens: int
    errors: int
    mean_batch: float = float("nan")

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def tps(self) -> float:
        return self.tokens / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Server:
    def __init__(self, max_batch_size: int, model: str | None, device: str | None):
        env = dict(
            os.environ,
            REGEXLM_API_KEYS=KEY,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
        )
        self.log = Path(tempfile.mkstemp(prefix="bench-serve-", suffix=".log")[1])
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
            "--log-level",
            "warning",
            "--queue-size",
            "1024",
        ]
        if model:
            args += ["--model", model]
        if device:
            args += ["--device", device]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            found = re.search(
                r"serving on (http://127\.0\.0\.1:\d+)", self.log.read_text(errors="replace")
            )
            if found:
                self.url = found.group(1)
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not start:\n" + self.log.read_text(errors="replace"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.unlink(missing_ok=True)


def request_body(i: int, max_new_tokens: int) -> dict:
    prompt, pattern = WORKLOAD[i % len(WORKLOAD)]
    return {
        "prompt": prompt,
        "pattern": pattern,
        "max_new_tokens": max_new_tokens,
        "temperature": 0.8,
        "top_k": 50,
        "top_p": 0.95,
        "seed": i,
    }


async def load(url: str, concurrency: int, seconds: float, max_new_tokens: int):
    latencies: list[float] = []
    tokens = 0
    errors = 0
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=300, limits=limits, headers={"Authorization": f"Bearer {KEY}"}
    ) as client:
        started = time.perf_counter()
        stop_at = started + seconds

        async def client_loop():
            nonlocal tokens, errors, counter
            while time.perf_counter() < stop_at:
                counter += 1
                sent = time.perf_counter()
                try:
                    response = await client.post(URL, json=request_body(counter, max_new_tokens))
                except httpx.HTTPError:
                    errors += 1
                    continue
                if response.status_code != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                tokens += response.json()["tokens_generated"]

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, tokens, errors


def batch_totals(url: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram."""
    text = httpx.get(url + "/metrics", timeout=30).text
    total = re.search(r"^regexlm_batch_size_sum (\S+)$", text, re.M)
    count = re.search(r"^regexlm_batch_size_count (\S+)$", text, re.M)
    return float(total.group(1)), float(count.group(1))


async def warm_up(url: str, max_new_tokens: int) -> None:
    async with httpx.AsyncClient(
        base_url=url, timeout=300, headers={"Authorization": f"Bearer {KEY}"}
    ) as client:
        for i in range(len(WORKLOAD)):
            response = await client.post(URL, json=request_body(i, max_new_tokens))
            response.raise_for_status()


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def render(runs: list[Run], args, load_before, load_after, device: str) -> str:
    from regexlm import __version__

    lines = [
        HEADING,
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- Version: regexlm {__version__} (commit {git_commit()})",
        f"- Machine: {machine()}; model on {device}",
        f"- Model: {args.model or 'smollm2 (SmolLM2-135M-Instruct, default)'}",
        f"- Workload: {len(WORKLOAD)} prompt/pattern pairs in rotation (phone, e-mail, yes/no, date, "
        f"colour, price, city, counts), max_new_tokens={args.max_new_tokens}, stop_after_match=true, "
        f"temperature 0.8, top_k 50, top_p 0.95; closed-loop clients over HTTP/1.1 keep-alive on "
        f"127.0.0.1, {args.seconds:g} s per run after a warm-up",
        f"- Load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}"
        + (
            " -- the machine was shared with other work during the run; absolute figures are "
            "pessimistic"
            if max(load_before, load_after) > 1.5
            else ""
        ),
        "",
        "| server | clients | requests/s | tokens/s | p50 latency (s) | p99 latency (s) | mean batch | requests | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.label} | {run.concurrency} | {run.rps:.2f} | {run.tps:.1f} | "
            f"{run.percentile(0.5):.3f} | {run.percentile(0.99):.3f} | "
            f"{run.mean_batch:.1f} | {len(run.latencies)} | {run.errors} |"
        )
    top = max(args.concurrency)
    batched = next((r for r in runs if r.max_batch_size > 1 and r.concurrency == top), None)
    single = next((r for r in runs if r.max_batch_size == 1 and r.concurrency == top), None)
    if batched and single and single.rps > 0:
        lines += [
            "",
            f"Batching at {top} clients: {batched.rps / single.rps:.1f}x the requests/s and "
            f"{batched.tps / max(single.tps, 1e-9):.1f}x the tokens/s of one request at a time "
            f"(target: at least 4x).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default=None, choices=("cpu", "cuda"))
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-size", type=int, default=32, help="--max-batch-size when batching")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--write", action="store_true", help=f"record the results in {RESULTS}")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    runs: list[Run] = []
    for label, batch_size in (
        ("batching (max batch 32)", args.batch_size),
        ("one at a time (max batch 1)", 1),
    ):
        if batch_size != 32:
            label = label.replace("32", str(batch_size))
        server = Server(batch_size, args.model, args.device)
        try:
            asyncio.run(warm_up(server.url, args.max_new_tokens))
            for concurrency in args.concurrency:
                before = batch_totals(server.url)
                elapsed, latencies, tokens, errors = asyncio.run(
                    load(server.url, concurrency, args.seconds, args.max_new_tokens)
                )
                after = batch_totals(server.url)
                batches = after[1] - before[1]
                run = Run(
                    label,
                    batch_size,
                    concurrency,
                    elapsed,
                    latencies,
                    tokens,
                    errors,
                    (after[0] - before[0]) / batches if batches else float("nan"),
                )
                runs.append(run)
                print(
                    f"{label:>28} | {concurrency:>3} clients | {run.rps:7.2f} req/s | "
                    f"{run.tps:8.1f} tok/s | p50 {run.percentile(0.5):.3f} s | "
                    f"p99 {run.percentile(0.99):.3f} s | mean batch {run.mean_batch:.1f} | "
                    f"errors {errors}",
                    flush=True,
                )
        finally:
            server.stop()
    load_after = os.getloadavg()[0]
    device = args.device or ("cuda" if _cuda() else "cpu")
    section = render(runs, args, load_before, load_after, device)
    print()
    print(section)
    if args.write:
        write_results_section(section, HEADING, RESULTS)
        print(f"written to {RESULTS}")
    return 1 if any(run.errors for run in runs) else 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(main())
