"""Token-index benchmark: regexlm against outlines-core, xgrammar and llguidance, on CPU.

Usage: python bench/bench_index.py [--libs regexlm,outlines-core,xgrammar,llguidance]
       [--tokenizers smollm2,gemma] [--repeats 5] [--timeout 60] [--only NAME] [--write-results]

For both tokenizers (SmolLM2, 49,152 byte-level BPE tokens; Gemma 3, 262,144 SentencePiece
tokens with byte fallback) and each pattern of ``bench/index_patterns.py`` it measures, per
library:

* **first mask**: pattern -> the start state's allowed-token mask, every cache off (regexlm
  ``cache=False``, xgrammar ``cache_enabled=False``): what a new pattern costs before its first
  constrained token; median of ``--repeats`` cold runs.
* **compile**: pattern -> ready-to-use index; median and worst of ``--repeats`` runs. For
  regexlm this includes the exploration its compile leaves for the first use (``settle``),
  which ``generate`` runs beside the prompt's forward pass. Per-vocabulary set-up (regexlm's
  Vocabulary and trie, xgrammar's TokenizerInfo, ...) is timed apart.
* **mask**: producing one step's full allowed-token mask at the states of three random walks
  (each library filling a preallocated bitmask: regexlm ``TokenIndex.fill_bitmask``, the others
  ``fill_next_token_bitmask``), median and p99.
* **memory**: regexlm ``TokenIndex.nbytes``; xgrammar ``memory_size_bytes``; outlines-core
  estimated as 8 bytes per stored (state, token) transition; llguidance builds masks lazily
  and holds no index.
* **wrong masks**: steps where the mask differs from a brute-force oracle that shares nothing
  with regexlm's automata (``bench/text_oracle.py``: every token's text after the walk's text
  judged by the ``regex`` package's partial match with ``re``'s classes spelled out, EOS by
  ``re.fullmatch``), at every step of the walks, every pattern. Tokens that leave a character
  unfinished are compared only where the oracle can judge them.

Patterns: the everyday ones of ``bench/index_patterns.py`` and its heavy ones (counted repeats
of Unicode classes, long counts), whose eager DFAs were refused or huge.

Each (library, tokenizer) runs in its own worker process, one pattern at a time; a pattern that
runs past ``--timeout`` seconds is recorded as a timeout and the worker restarts after it.
All libraries run single-threaded (torch, xgrammar ``max_threads=1``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.environment import cpu_model  # noqa: E402
from bench.index_patterns import BLOWUP, HEAVY, PATTERNS  # noqa: E402

ALL_PATTERNS = PATTERNS + HEAVY
HEAVY_NAMES = {name for name, _ in HEAVY}

LIBS = ["regexlm", "outlines-core", "xgrammar", "llguidance"]
TOKENIZERS = ["smollm2", "gemma"]
WALKS, WALK_STEPS, MASK_REPS = 3, 16, 20
ORACLE_SECONDS = 60  # per pattern and tokenizer; steps after it are not judged
HEADING = "## Token index (bench/bench_index.py)"


# -- shared set-up ---------------------------------------------------------------------------


def load_tokenizer(name: str):
    if name == "smollm2":
        from regexlm.models import load_tokenizer as load

        return load()
    from tests.index.gemma_tokenizer import load_gemma_tokenizer

    return load_gemma_tokenizer()


def load_vocab(name: str, tokenizer):
    from regexlm.index import Vocabulary

    extra = {"generation_config": {"eos_token_id": [1, 106]}} if name == "gemma" else {}
    return Vocabulary.from_tokenizer(tokenizer, **extra)


def pack(mask):
    import numpy as np

    return np.packbits(mask, bitorder="little")


def prepare(
    tok_name: str, tokenizer, vocab, workdir: Path, only: str | None, oracle_check: bool = True
) -> None:
    """Random walks (token ids) and oracle masks at every step, for the workers to check against."""
    import numpy as np

    import regexlm
    from bench.text_oracle import OutOfTime, TextOracle

    rng = np.random.default_rng(0)
    eos = set(vocab.eos_ids)
    usable = ~vocab.never_allowed()
    for name, pattern in ALL_PATTERNS:
        if only and only not in name:
            continue
        index = regexlm.compile(pattern, vocab, cache=False, timeout=120)
        walks = []
        for _ in range(WALKS):
            state, walk = index.start_state, []
            for _ in range(WALK_STEPS):
                allowed = [t for t in index.allowed_tokens(state).tolist() if t not in eos]
                if not allowed:
                    break
                token = int(allowed[rng.integers(len(allowed))])
                walk.append(token)
                state = index.next_state(state, token)
            walks.append(walk)
        record = {"walks": walks, "oracle": None}
        if oracle_check:
            started = time.monotonic()
            deadline = started + ORACLE_SECONDS
            judge = TextOracle(pattern, vocab.token_bytes, usable, vocab.eos_ids)
            masks, judged = [], 0
            for walk in walks:
                data, steps = b"", []
                for token in [*walk, None]:
                    try:
                        want, checked = judge.mask(data, deadline)
                        steps.append([pack(want).tolist(), pack(checked).tolist()])
                        judged += 1
                    except OutOfTime:
                        steps.append(None)  # not judged: left out of the comparison
                    if token is not None:
                        data += vocab.token_bytes[token]
                masks.append(steps)
            record["oracle"] = masks
            print(
                f"  oracle {name}: {judged} steps judged in {time.monotonic() - started:.1f} s",
                flush=True,
            )
        (workdir / f"{tok_name}-{_slug(name)}.json").write_text(json.dumps(record))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


# -- one library -------------------------------------------------------------------------------


class Regexlm:
    def __init__(self, tokenizer, vocab):
        import torch

        import regexlm

        self.regexlm, self.torch, self.vocab = regexlm, torch, vocab
        started = time.perf_counter()
        vocab.tables()
        from regexlm.index.compiler import prepare

        prepare(vocab)  # per-vocabulary set-up: tries and C helpers, made once
        self.setup_s = time.perf_counter() - started
        self.buf = torch.zeros(1, (vocab.size + 31) // 32, dtype=torch.int32)

    def compile(self, pattern):
        # The automata layer's default 1 s time limit is lifted: the peers have none. Compile
        # stops at the start row and leaves the exploration for the first use; it is counted
        # here (settle), so "compile" is everything before the first budget-aware step.
        return self.compile_first(pattern).settle()

    def compile_first(self, pattern):
        """Only what the start state's mask needs (the exploration is left for later)."""
        return self.regexlm.compile(pattern, self.vocab, cache=False, timeout=120)

    def memory(self, index):
        return index.nbytes

    def start(self, index):
        return [index.start_state]

    def mask(self, index, state):
        index.fill_bitmask(self.buf, [state[0]])
        return self.buf[0]

    def advance(self, index, state, token):
        nxt = index.next_state(state[0], token)
        state[0] = nxt
        return nxt >= 0


class OutlinesCore:
    def __init__(self, tokenizer, vocab):
        import outlines_core
        import torch

        self.oc, self.torch = outlines_core, torch
        started = time.perf_counter()
        never = vocab.never_allowed()
        by_bytes: dict[bytes, list[int]] = {}
        for i, b in enumerate(vocab.token_bytes):
            if not never[i]:
                by_bytes.setdefault(b, []).append(i)
        self.vocabulary = outlines_core.Vocabulary(vocab.eos_ids[0], by_bytes)
        self.setup_s = time.perf_counter() - started
        self.words = (vocab.size + 31) // 32
        self.buf = torch.zeros(self.words, dtype=torch.int32)

    def compile(self, pattern):
        return self.oc.Index(pattern, self.vocabulary)

    def memory(self, index):
        # estimate: 8 bytes (token id, next state) per stored transition
        return 8 * sum(len(row) for row in index.get_transitions().values())

    def start(self, index):
        return self.oc.Guide(index)

    def mask(self, index, guide):
        guide.write_mask_into(self.buf.data_ptr(), self.buf.numel(), 4)
        return self.buf

    def advance(self, index, guide, token):
        try:
            guide.advance(token, return_tokens=False)
        except Exception:
            return False
        return True


class Xgrammar:
    def __init__(self, tokenizer, vocab):
        import xgrammar

        self.xgr = xgrammar
        started = time.perf_counter()
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab.size)
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.setup_s = time.perf_counter() - started
        self.buf = xgrammar.allocate_token_bitmask(1, vocab.size)

    def compile(self, pattern):
        return self.compiler.compile_regex(pattern)

    def memory(self, compiled):
        return compiled.memory_size_bytes

    def start(self, compiled):
        return self.xgr.GrammarMatcher(compiled)

    def mask(self, compiled, matcher):
        matcher.fill_next_token_bitmask(self.buf)
        return self.buf[0]

    def advance(self, compiled, matcher, token):
        return bool(matcher.accept_token(token))


class Llguidance:
    def __init__(self, tokenizer, vocab):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.llg = llguidance
        started = time.perf_counter()
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab.size)
        self.setup_s = time.perf_counter() - started
        self.buf = llguidance.torch.allocate_token_bitmask(1, vocab.size)

    def compile(self, pattern):
        matcher = self.llg.LLMatcher(self.tokenizer, self.llg.grammar_from("regex", pattern))
        if matcher.is_error():
            raise RuntimeError(matcher.get_error())
        return pattern

    def memory(self, pattern):
        return None

    def start(self, pattern):
        return self.llg.LLMatcher(self.tokenizer, self.llg.grammar_from("regex", pattern))

    def mask(self, pattern, matcher):
        self.llg.torch.fill_next_token_bitmask(matcher, self.buf, 0)
        return self.buf[0]

    def advance(self, pattern, matcher, token):
        return bool(matcher.consume_token(token)) and not matcher.is_error()


ADAPTERS = {
    "regexlm": Regexlm,
    "outlines-core": OutlinesCore,
    "xgrammar": Xgrammar,
    "llguidance": Llguidance,
}


def _mask_bits(words, vocab_size: int):
    import numpy as np

    raw = np.asarray(words.cpu().numpy() if hasattr(words, "cpu") else words, dtype=np.int32)
    bits = np.unpackbits(raw.view(np.uint8), bitorder="little")
    return bits[:vocab_size].astype(bool)


def worker(
    lib: str, tok_name: str, workdir: Path, repeats: int, skip: int, only: str | None
) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    tokenizer = load_tokenizer(tok_name)
    vocab = load_vocab(tok_name, tokenizer)
    adapter = ADAPTERS[lib](tokenizer, vocab)
    adapter.compile("warm(up)?")  # first-call costs (lazy imports, allocators) are not compile time
    print(json.dumps({"setup_s": adapter.setup_s}), flush=True)
    # Ids no library other than regexlm is told are EOS are left out of the comparison.
    ignore = np.zeros(vocab.size, dtype=bool)
    ignore[vocab.eos_ids[1:]] = True
    todo = [(n, p) for n, p in ALL_PATTERNS if not only or only in n]
    compile_first = getattr(adapter, "compile_first", adapter.compile)
    for name, pattern in todo[skip:]:
        print(json.dumps({"start": name}), flush=True)
        row: dict = {"pattern": name}
        try:
            firsts = []
            for _ in range(repeats):
                started = time.perf_counter()
                compiled = compile_first(pattern)
                adapter.mask(compiled, adapter.start(compiled))
                firsts.append(time.perf_counter() - started)
                if firsts[-1] > 2.0:
                    break
            row["first_mask_ms"] = [t * 1e3 for t in firsts]
            times = []
            compiled = None
            for _ in range(repeats):
                started = time.perf_counter()
                compiled = adapter.compile(pattern)
                times.append(time.perf_counter() - started)
                if times[-1] > 2.0:
                    break
            row["compile_ms"] = [t * 1e3 for t in times]
            if lib == "regexlm":
                row["build_ms"] = compiled.info.get("build_seconds", 0) * 1e3
            row["memory"] = adapter.memory(compiled)
            record = json.loads((workdir / f"{tok_name}-{_slug(name)}.json").read_text())
            samples, wrong_steps, steps, false_allow, false_deny, rejected = [], 0, 0, 0, 0, 0
            unjudged = 0
            for w, walk in enumerate(record["walks"]):
                state = adapter.start(compiled)
                for i, token in enumerate([*walk, None]):
                    for _ in range(MASK_REPS):
                        started = time.perf_counter()
                        words = adapter.mask(compiled, state)
                        samples.append(time.perf_counter() - started)
                    if record["oracle"] is not None and record["oracle"][w][i] is not None:
                        got = _mask_bits(words, vocab.size)
                        want, checked = (
                            np.unpackbits(np.asarray(m, dtype=np.uint8), bitorder="little")[
                                : vocab.size
                            ].astype(bool)
                            for m in record["oracle"][w][i]
                        )
                        judged = checked & ~ignore
                        fa = int((got & ~want & judged).sum())
                        fd = int((~got & want & judged).sum())
                        unjudged += int((~checked & ~ignore).sum())
                        steps += 1
                        wrong_steps += int(fa + fd > 0)
                        false_allow += fa
                        false_deny += fd
                    if token is not None and not adapter.advance(compiled, state, token):
                        rejected += 1
                        break
            samples_us = sorted(s * 1e6 for s in samples)
            row["mask_us_median"] = statistics.median(samples_us)
            row["mask_us_p99"] = samples_us[int(0.99 * (len(samples_us) - 1))]
            if record["oracle"] is not None:
                row["wrong"] = {
                    "steps": steps,
                    "wrong_steps": wrong_steps,
                    "false_allow": false_allow,
                    "false_deny": false_deny,
                    "rejected": rejected,
                    "unjudged": unjudged,
                }
        except Exception as exc:  # a library that cannot handle a pattern
            row["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        print(json.dumps(row), flush=True)


# -- driver ------------------------------------------------------------------------------------


def _pump(stream, lines) -> None:
    """Forward a worker's output lines to a queue, then None at the end."""
    for line in stream:
        lines.put(line)
    lines.put(None)


def run_library(lib, tok_name, workdir, args) -> tuple[dict, list[dict]]:
    import queue
    import threading

    todo = [n for n, _ in ALL_PATTERNS if not args.only or args.only in n]
    rows: list[dict] = []
    setup: dict = {}
    skip = 0
    while skip < len(todo):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            lib,
            tok_name,
            str(workdir),
            str(args.repeats),
            str(skip),
        ]
        if args.only:
            cmd += ["--only", args.only]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        current, deadline, progressed = None, time.monotonic() + args.timeout + 120, False
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                proc.kill()
                proc.wait()
                rows.append(
                    {"pattern": current or todo[skip], "error": f"timeout after {args.timeout:g} s"}
                )
                print(f"  {lib:13s} {tok_name:7s} {current}: timeout", flush=True)
                skip += 1
                break
            if line is None:
                proc.wait()
                if not progressed or current is not None:
                    rows.append(
                        {
                            "pattern": current or todo[skip],
                            "error": f"worker exited with {proc.returncode}",
                        }
                    )
                    skip += 1
                break
            msg = json.loads(line)
            if "setup_s" in msg:
                setup = msg
            elif "start" in msg:
                current, deadline = msg["start"], time.monotonic() + args.timeout
            else:
                rows.append(msg)
                skip += 1
                current, progressed = None, True
                print(f"  {lib:13s} {tok_name:7s} {_summary(msg)}", flush=True)
    return setup, rows


def _summary(row: dict) -> str:
    if "error" in row:
        return f"{row['pattern']}: {row['error']}"
    w = row.get("wrong")
    wrong = f"wrong {w['wrong_steps']}/{w['steps']}" if w else "wrong n/a"
    return (
        f"{row['pattern']}: first mask {statistics.median(row['first_mask_ms']):.2f} ms, "
        f"compile {statistics.median(row['compile_ms']):.2f} ms, mask p99 "
        f"{row['mask_us_p99']:.1f} us, mem {row['memory']}, {wrong}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--tokenizers", default=",".join(TOKENIZERS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per pattern and library")
    ap.add_argument("--only", help="run the patterns whose name contains this")
    ap.add_argument("--no-oracle", action="store_true", help="skip the brute-force mask check")
    ap.add_argument("--write-results", action="store_true")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--from-json", help="render (and with --write-results, record) a saved run")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        lib, tok_name, workdir, repeats, skip = args.worker
        worker(lib, tok_name, Path(workdir), int(repeats), int(skip), args.only)
        return
    if args.from_json:
        text = render(json.loads(Path(args.from_json).read_text()), args)
        print(text)
        if args.write_results:
            write_results(text)
        return
    import torch

    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for tok_name in args.tokenizers.split(","):
            tokenizer = load_tokenizer(tok_name)
            started = time.perf_counter()
            vocab = load_vocab(tok_name, tokenizer)
            vocab_s = time.perf_counter() - started
            started = time.perf_counter()
            vocab.tables()
            trie_s = time.perf_counter() - started
            print(
                f"{tok_name}: vocabulary {vocab_s:.2f} s, trie {trie_s:.2f} s; preparing walks and oracle",
                flush=True,
            )
            prepare(tok_name, tokenizer, vocab, workdir, args.only, not args.no_oracle)
            results[tok_name] = {
                "vocab_s": vocab_s,
                "trie_s": trie_s,
                "size": vocab.size,
                "libs": {},
            }
            for lib in args.libs.split(","):
                setup, rows = run_library(lib, tok_name, workdir, args)
                results[tok_name]["libs"][lib] = {"setup": setup, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    text = render(results, args)
    print(text)
    if args.write_results:
        write_results(text)


# -- report ------------------------------------------------------------------------------------


def _fmt_ms(x):
    return "—" if x is None else (f"{x:.2f}" if x < 10 else f"{x:.0f}")


def _fmt_bytes(x):
    if x is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= size:
            return f"{x / size:.1f} {unit}"
    return f"{x} B"


def render(results: dict, args) -> str:
    out = []
    for tok_name, res in results.items():
        libs = res["libs"]
        out.append(f"### {tok_name} ({res['size']:,} tokens)\n")
        setups = ", ".join(
            f"{lib} {v['setup'].get('setup_s', float('nan')):.2f} s" for lib, v in libs.items()
        )
        out.append(
            f"Per-vocabulary set-up, once: regexlm Vocabulary {res['vocab_s']:.2f} s + trie {res['trie_s']:.2f} s; "
            f"in the workers: {setups}.\n"
        )
        out.append(
            "Summary: medians over the everyday patterns, worsts over every pattern (heavy ones "
            "included); a pattern that failed or timed out counts under errors, not in the times.\n"
        )
        out.append(
            "| library | first mask median ms | first mask worst ms | compile median ms | compile worst ms | mask median µs | mask p99 µs (worst pattern) | memory median | patterns with wrong masks | errors/timeouts |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for lib, v in libs.items():
            rows = v["rows"]
            ok = [r for r in rows if "error" not in r]
            everyday = [r for r in ok if r["pattern"] not in HEAVY_NAMES]
            first_med = [statistics.median(r["first_mask_ms"]) for r in everyday]
            first_worst = [statistics.median(r["first_mask_ms"]) for r in ok]
            med = [statistics.median(r["compile_ms"]) for r in everyday]
            worst = [max(r["compile_ms"]) for r in ok]
            mem = [r["memory"] for r in ok if r.get("memory") is not None]
            checked = [r for r in ok if r.get("wrong")]
            bad = [r for r in checked if r["wrong"]["wrong_steps"] or r["wrong"]["rejected"]]
            errs = [r for r in rows if "error" in r]
            out.append(
                f"| {lib} | {_fmt_ms(statistics.median(first_med) if first_med else None)} "
                f"| {_fmt_ms(max(first_worst) if first_worst else None)} "
                f"| {_fmt_ms(statistics.median(med) if med else None)} | {_fmt_ms(max(worst) if worst else None)} "
                f"| {statistics.median([r['mask_us_median'] for r in ok]):.2f} | {max(r['mask_us_p99'] for r in ok):.1f} "
                f"| {_fmt_bytes(statistics.median(mem)) if mem else '—'} | {len(bad)} of {len(checked)} | {len(errs)} |"
                if ok
                else f"| {lib} | — | — | — | — | — | — | — | — | {len(errs)} |"
            )
        ours = [r for r in libs.get("regexlm", {}).get("rows", []) if "build_ms" in r]
        if ours:
            build = [r["build_ms"] for r in ours if r["pattern"] != BLOWUP]
            blow = [r["build_ms"] for r in ours if r["pattern"] == BLOWUP]
            regex = [
                statistics.median(r["compile_ms"]) - r["build_ms"]
                for r in ours
                if r["pattern"] != BLOWUP
            ]
            out.append(
                f"\nregexlm split: the start row alone (last run of each pattern) median {statistics.median(build):.2f} ms, "
                f"worst {max(build):.0f} ms"
                + (f", blow-up {blow[0]:.0f} ms" if blow else "")
                + f"; the rest (automaton, and the exploration left for the first use) median {statistics.median(regex):.2f} ms, worst {max(regex):.0f} ms."
            )
        out.append("")
        names = [r["pattern"] for r in next(iter(libs.values()))["rows"]]
        out.append(
            "Per pattern: first mask median ms / compile median ms / mask p99 µs / memory / steps "
            "with a wrong mask out of steps checked (+ tokens falsely allowed, − tokens falsely "
            "denied, summed over steps). Heavy patterns are marked *(heavy)*.\n"
        )
        head = "| pattern | " + " | ".join(libs) + " |"
        out.append(head)
        out.append("|---|" + "---:|" * len(libs))
        for name in names:
            cells = []
            for v in libs.values():
                row = next((r for r in v["rows"] if r["pattern"] == name), None)
                if row is None:
                    cells.append("—")
                elif "error" in row:
                    cells.append(f"error: {row['error'][:60]}")
                else:
                    w = row.get("wrong")
                    wrong = "n/a" if not w else f"{w['wrong_steps']}/{w['steps']}"
                    if w and w["wrong_steps"]:
                        wrong += f" (+{w['false_allow']} −{w['false_deny']})"
                    if w and w["rejected"]:
                        wrong += f", rejected {w['rejected']}"
                    cells.append(
                        f"{_fmt_ms(statistics.median(row['first_mask_ms']))} / "
                        f"{_fmt_ms(statistics.median(row['compile_ms']))} / {row['mask_us_p99']:.1f} / {_fmt_bytes(row['memory'])} / {wrong}"
                    )
            mark = " *(heavy)*" if name in HEAVY_NAMES else ""
            out.append(f"| `{name}`{mark} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("regexlm", "torch", "outlines-core", "xgrammar", "llguidance"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} not installed")
    return ", ".join(out)


def write_results(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"{HEADING}\n\n- machine: {machine()} (CPU only; other jobs shared the cores)\n- date: {now}\n"
        f"- versions: {versions()}\n- command: `python bench/bench_index.py --write-results`\n\n{text}\n"
    )
    existing = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if HEADING in existing:
        head, rest = existing.split(HEADING, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        existing = head + section + ("\n" + tail if tail else "")
    else:
        existing = existing.rstrip("\n") + "\n\n" + section
    path.write_text(existing)


if __name__ == "__main__":
    main()
