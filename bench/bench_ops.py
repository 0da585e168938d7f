"""Per-step cost of the sampling step: fused kernels against the usual unfused pipelines.

One step = grammar mask + budget mask + repetition penalty + temperature + top-k + top-p + draw +
automaton advance, for a batch of B rows over a vocabulary of V tokens.

GPU (``--device cuda``): for B in {1, 8, 64, 256}, V in {49152, 128256, 262144}, fp32 and bf16:

- ``triton``      the fused Triton kernel (one launch)
- ``cuda``        the fused CUDA kernel from ``csrc/`` (when built or JIT-buildable)
- ``torch-sort``  the plain-torch pipeline peers use: bitmask -> masked_fill, transformers-style
                  sort-based top-k / top-p, softmax, ``torch.multinomial``, table lookup
- ``xgrammar``    xgrammar's bitmask kernel, then the same torch sampling (when installed)
- ``one-pass``    ``amax`` over the logits: one read of the row, the floor for any step

GB/s counts the bytes of one read of the logits (plus the bitmask rows) per step, so it says how
close a step comes to a single pass over the logits.

CPU (``--device cpu``): the torch backend (the CPU production path) against an unconstrained
torch sampling step at V = 49,152, medians of many steps in the same run (target: at most 1.5x).
"unconstrained" is transformers' warpers (temperature, top-k and top-p as masked_fill over V,
softmax, multinomial) with no mask and no automaton; "unconstrained lean" (top-k only) samples
from the k values ``torch.topk`` returns.

    PYTHONPATH=. python bench/bench_ops.py --device cpu
    PYTHONPATH=. python bench/bench_ops.py --device cuda [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import sys
import time

import torch

from regexlm.ops import sample_step
from regexlm.ops.testing import pack_bitmask, random_tables, unpack_bitmask

CONFIGS = {  # name: temperature, top_k, top_p, repetition_penalty
    "k50": (1.0, 50, 1.0, 1.0),  # the HTTP API's defaults
    "k50-p0.9": (0.8, 50, 0.9, 1.1),
}


@functools.lru_cache(maxsize=4)
def _tables(V, device, seed):
    return random_tables(64, V, 256, allow_prob=0.7, seed=seed, device=device)


_BITMASKS: dict[int, tuple] = {}


def peer_bitmask(tables):
    """The per-state bitmask the peer pipelines store: int32[S, ceil(V/32)], built once per
    table (in `make_step`, outside the timings)."""
    hit = _BITMASKS.get(id(tables))
    if hit is None or hit[0] is not tables:
        allowed = tables.next_by_class[:, tables.class_of.long()] >= 0  # [S, V]
        hit = _BITMASKS[id(tables)] = (tables, pack_bitmask(allowed))
    return hit[1]


def make_step(B, V, dtype, device, config, seed=0):
    """Inputs of one step: random tables (64 states, 256 classes, ~70% allowed), budget 4."""
    t, k, p, pen = CONFIGS[config]
    tables = _tables(V, str(device), seed)
    g = torch.Generator().manual_seed(seed)
    f32 = dict(device=device, dtype=torch.float32)
    i32 = dict(device=device, dtype=torch.int32)
    peer_bitmask(tables)
    return dict(
        logits=(torch.randn(B, V, generator=g) * 3).to(device=device, dtype=dtype),
        states=torch.randint(1, 64, (B,), generator=g).to(**i32),
        budgets=torch.full((B,), 4, **i32),
        temperature=torch.full((B,), t, **f32),
        top_k=torch.full((B,), k, **i32),
        top_p=torch.full((B,), p, **f32),
        repetition_penalty=torch.full((B,), pen, **f32),
        seen=(torch.rand(B, V, generator=g) < 0.002).to(device),
        tables=tables,
    )


def torch_sort_pipeline(a, k, p, *, mask=True):
    """The unfused pipeline: masked_fill by the bitmask, transformers-style warpers, multinomial."""
    x = a["logits"].to(torch.float32)  # [B, V]
    tables, states = a["tables"], a["states"].long()
    if mask:
        allowed = unpack_bitmask(peer_bitmask(tables)[states], x.shape[1])  # [B, V]
        x = x.masked_fill(~allowed, -torch.inf)
    pen = a["repetition_penalty"].unsqueeze(1)
    x = torch.where(a["seen"], torch.where(x < 0, x * pen, x / pen), x)
    return _sample_tail(x, a["temperature"], k, p, tables, states if mask else None)


def _sample_tail(x, temperature, k, p, tables=None, states=None):
    x = x / temperature.unsqueeze(1)
    if k > 0:
        kth = torch.topk(x, k, dim=1).values[:, -1:]
        x = x.masked_fill(x < kth, -torch.inf)
    if p < 1.0:
        sorted_x, idx = torch.sort(x, dim=1)
        cum = sorted_x.softmax(1).cumsum(1)
        remove = cum <= 1 - p
        remove[:, -1] = False
        x = x.masked_fill(remove.scatter(1, idx, remove), -torch.inf)
    tokens = torch.multinomial(torch.softmax(x, 1), 1).squeeze(1)
    if tables is None:
        return tokens
    return tokens, tables.next_by_class[states, tables.class_of[tokens].long()]


def _lean_topk_sample(x, temperature, k):
    """The leanest unconstrained top-k step: topk, softmax over k, multinomial, index."""
    vals, idx = torch.topk(x / temperature.unsqueeze(1), k, dim=1)
    pick = torch.multinomial(torch.softmax(vals, 1), 1)
    return idx.gather(1, pick).squeeze(1)


def xgrammar_pipeline(a, k, p):
    import xgrammar  # noqa: F401

    x = a["logits"].to(torch.float32)
    xgrammar.apply_token_bitmask_inplace(x, peer_bitmask(a["tables"])[a["states"].long()])
    pen = a["repetition_penalty"].unsqueeze(1)
    x = torch.where(a["seen"], torch.where(x < 0, x * pen, x / pen), x)
    return _sample_tail(x, a["temperature"], k, p, a["tables"], a["states"].long())


def _gpu_time_ms(fn, reps):
    try:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=10, rep=reps, return_mode="median"))
    except Exception:
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(30):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        return statistics.median(times)


def _cpu_time_ms(fn, iters):
    """Median wall ms and median process-CPU ms of one call (CPU time ignores waiting for a
    core on a loaded machine)."""
    fn()
    wall, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def gpu_bench(args):
    rows = []
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    batches = [1, 64] if args.quick else [1, 8, 64, 256]
    vocabs = [128256] if args.quick else [49152, 128256, 262144]
    dtypes = [torch.bfloat16] if args.quick else [torch.float32, torch.bfloat16]
    configs = list(CONFIGS) if not args.quick else ["k50", "k50-p0.9"]
    from regexlm.ops.dispatch import available_backends
    from regexlm.ops.sample_cuda import unavailable_reason

    have_cuda = unavailable_reason(build=True) is None
    try:
        import xgrammar  # noqa: F401

        have_xgr = True
    except Exception:
        have_xgr = False
    print(
        f"# device: {props.name}; backends: {available_backends(dev)}; cuda ext: {have_cuda}; "
        f"xgrammar: {have_xgr}",
        flush=True,
    )
    for config in configs:
        t, k, p, _ = CONFIGS[config]
        for dtype in dtypes:
            for V in vocabs:
                for B in batches:
                    a = make_step(B, V, dtype, dev, config)
                    nbytes = B * V * a["logits"].element_size() + B * ((V + 31) // 32) * 4
                    cands = {
                        "one-pass": lambda a=a, k=k, p=p: torch.amax(a["logits"], dim=1),
                        "triton": lambda a=a, k=k, p=p: sample_step(
                            **a, seed=1, step=0, backend="triton"
                        ),
                        "torch-sort": lambda a=a, k=k, p=p: torch_sort_pipeline(a, k, p),
                    }
                    if have_cuda:
                        cands["cuda"] = lambda a=a, k=k, p=p: sample_step(
                            **a, seed=1, step=0, backend="cuda"
                        )
                    if have_xgr:
                        cands["xgrammar"] = lambda a=a, k=k, p=p: xgrammar_pipeline(a, k, p)
                    res = {}
                    for name, fn in cands.items():
                        try:
                            res[name] = _gpu_time_ms(fn, args.rep_ms)
                        except Exception as exc:  # keep going: report what ran
                            print(f"  {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    for name, ms in res.items():
                        row = dict(
                            device=props.name,
                            config=config,
                            dtype=str(dtype).split(".")[1],
                            B=B,
                            V=V,
                            backend=name,
                            ms=ms,
                            gbps=nbytes / ms / 1e6,
                            vs_one_pass=ms / res["one-pass"] if "one-pass" in res else None,
                            speedup_vs_torch=(res["torch-sort"] / ms)
                            if "torch-sort" in res
                            else None,
                        )
                        rows.append(row)
                        print(
                            f"{config:9s} {row['dtype']:8s} V={V:6d} B={B:3d} {name:10s} "
                            f"{ms * 1e3:9.1f} us {row['gbps']:8.1f} GB/s "
                            f"x{row['vs_one_pass'] or float('nan'):.2f} of one pass, "
                            f"{row['speedup_vs_torch'] or float('nan'):.2f}x vs torch-sort",
                            flush=True,
                        )
                    del a
    return rows


def cpu_bench(args):
    rows = []
    V = 49152
    print(
        f"# cpu: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}",
        flush=True,
    )
    for config in CONFIGS:
        t, k, p, _ = CONFIGS[config]
        for B in (1, 8):
            a = make_step(B, V, torch.float32, "cpu", config)
            counter = iter(range(10**9))
            ours = lambda a=a, c=counter: sample_step(**a, seed=1, step=next(c), backend="torch")  # noqa: E731
            plain = lambda a=a, k=k, p=p: _sample_tail(a["logits"].float(), a["temperature"], k, p)  # noqa: E731
            sort_pipe = lambda a=a, k=k, p=p: torch_sort_pipeline(a, k, p)  # noqa: E731
            lean = lambda a=a, k=k, p=p: _lean_topk_sample(a["logits"].float(), a["temperature"], k)  # noqa: E731
            # interleave the repeats so that load from other processes hits all alike
            res = {"torch backend": [], "unconstrained": [], "torch-sort (masked)": []}
            if p >= 1.0:
                res["unconstrained lean"] = []
            for _ in range(args.cpu_rounds):
                res["torch backend"].append(_cpu_time_ms(ours, args.cpu_iters))
                res["unconstrained"].append(_cpu_time_ms(plain, args.cpu_iters))
                res["torch-sort (masked)"].append(_cpu_time_ms(sort_pipe, args.cpu_iters))
                if p >= 1.0:
                    res["unconstrained lean"].append(_cpu_time_ms(lean, args.cpu_iters))
            med = {n: statistics.median(w for w, _ in v) for n, v in res.items()}
            cpu = {n: statistics.median(c for _, c in v) for n, v in res.items()}
            for name, ms in med.items():
                row = dict(
                    device="cpu",
                    config=config,
                    dtype="float32",
                    B=B,
                    V=V,
                    backend=name,
                    ms=ms,
                    cpu_ms=cpu[name],
                    vs_unconstrained=ms / med["unconstrained"],
                    cpu_vs_unconstrained=cpu[name] / cpu["unconstrained"],
                )
                if "unconstrained lean" in cpu:
                    row["cpu_vs_lean"] = cpu[name] / cpu["unconstrained lean"]
                rows.append(row)
                print(
                    f"{config:9s} V={V} B={B:2d} {name:20s} wall {ms * 1e3:8.1f} us "
                    f"cpu {cpu[name] * 1e3:8.1f} us  {row['cpu_vs_unconstrained']:.2f}x "
                    f"unconstrained (cpu)",
                    flush=True,
                )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="a few sizes only")
    ap.add_argument("--rep-ms", type=int, default=60, help="GPU: ms of repeats per measurement")
    ap.add_argument("--cpu-iters", type=int, default=60)
    ap.add_argument("--cpu-rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="CPU: torch threads (0: torch's own)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = gpu_bench(args) if args.device == "cuda" else cpu_bench(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
