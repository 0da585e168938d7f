#!/usr/bin/env bash
# GPU check of the per-step kernels and of generation on them, in one call of at most 8 minutes.
#   1. build csrc/ in the background (setup.py build_ext --inplace; torch's JIT as a fallback)
#   2. the Triton split-row protocol with many rows at once (and the CUDA kernel once built):
#      every row against the torch reference, the arrival counters back at zero
#   3. end to end: one Generator batch per backend (torch, triton, cuda), a tiny random Llama
#      over the real tokenizer, mixed patterns; outputs checked with re.fullmatch / viability
#   4. GPU tests (pytest -m gpu): Triton and CUDA against the reference, given noise and the
#      in-step generator, the extremes property test, seeded frequencies
#   5. the lazy index's new rows on the device (bench/bench_device_rows.py): a row built and
#      appended alone, and the wait it adds beside a queued stand-in forward pass, both
#      tokenizers where their folders are here
#   6. bench/bench_ops.py --quick with the time left
#   7. a short table, printed last, also when a step fails or time runs out
# Needs: a CUDA GPU, torch (CUDA build), triton, nvcc; pytest + hypothesis for step 4 (without
# them step 4 runs a direct equality check). Installs nothing; uses PYTHONPATH=. Tokenizers, made
# where the default model is installed and carried (.cache is ignored; carry .cache/gpu_check):
#   python -c "from regexlm.models import load_tokenizer;
#     load_tokenizer().save_pretrained('.cache/gpu_check/tokenizer')"          (SmolLM2, 3.5 MB)
#   python -c "from tests.index.gemma_tokenizer import load_gemma_tokenizer;
#     load_gemma_tokenizer().save_pretrained('.cache/gpu_check/gemma')"        (Gemma 3, 33 MB)
# Step 3 reads $REGEXLM_GPU_TOKENIZER or .cache/gpu_check/tokenizer, else the default model's
# own; step 5 runs the tokenizers whose folders are there.
# Usage: bash bench/gpu_check.sh          (run from anywhere; logs in $OUT or /tmp)
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
unset TRITON_INTERPRET
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
OUTDIR="${OUT:-/tmp}/regexlm_gpu_check"
mkdir -p "$OUTDIR"
rm -f "$OUTDIR"/*.log "$OUTDIR"/*.json  # no stale results in this run's table
START=$(date +%s)
DEADLINE=${GPU_CHECK_SECONDS:-465}  # the whole script, summary included, stays under 8 minutes
declare -A STATUS
STEPS=(environment build split_rows e2e tests rows bench)
for s in "${STEPS[@]}"; do STATUS[$s]="not run"; done

elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( DEADLINE - $(elapsed) )); }
# budget WANT [RESERVE]: seconds a step may take: WANT, or what is left minus RESERVE, >= 5
budget() { local b=$(( $(left) - ${2:-0} )); [ "$b" -gt "$1" ] && b=$1; [ "$b" -lt 5 ] && b=5; echo "$b"; }
phase() { echo; echo "=== [$(elapsed)s] $*"; }
note() { STATUS[$1]="$2"; echo "--> $1: $2"; }

summary() {
  trap - EXIT INT TERM
  echo
  echo "=== [$(elapsed)s] summary"
  if [ -f "$OUTDIR/bench.json" ] || [ -f "$OUTDIR/bench.log" ]; then
    "$PY" - "$OUTDIR" <<'PYEOF' 2>/dev/null || echo "(no benchmark table)"
import json, os, re, sys
out = sys.argv[1]
rows = []
path = os.path.join(out, "bench.json")
if os.path.exists(path):
    rows = json.load(open(path))
elif os.path.exists(os.path.join(out, "bench.log")):  # the printed lines of a cut-short run
    pat = re.compile(r"^(\S+)\s+(\S+)\s+V=\s*(\d+) B=\s*(\d+) (\S+)\s+([\d.]+) us\s+([\d.]+) GB/s x([\d.na]+) of one pass, ([\d.na]+)x")
    for line in open(os.path.join(out, "bench.log"), errors="replace"):
        m = pat.match(line)
        if m:
            c, d, V, B, name, us, gb, x1, sp = m.groups()
            num = lambda v: float(v) if v != "nan" else None
            rows.append(dict(config=c, dtype=d, V=int(V), B=int(B), backend=name, ms=float(us) / 1e3,
                             gbps=float(gb), vs_one_pass=num(x1), speedup_vs_torch=num(sp)))
cells = {}
for r in rows:
    cells.setdefault((r["config"], r["dtype"], r["V"], r["B"]), {})[r["backend"]] = r
if cells:
    print("per-step cost, us (x1p: multiple of one pass over the logits)")
    print(f"{'config':9s} {'dtype':8s} {'V':>6s} {'B':>3s} | {'triton':>8s} {'x1p':>5s} | {'cuda':>8s} {'x1p':>5s} | {'torch-sort':>10s}")
    for key in sorted(cells):
        c = cells[key]
        def f(name):
            r = c.get(name)
            return f"{r['ms'] * 1e3:8.1f} {r['vs_one_pass'] or float('nan'):5.2f}" if r else f"{'-':>8s} {'-':>5s}"
        ts = c.get("torch-sort")
        print(f"{key[0]:9s} {key[1]:8s} {key[2]:6d} {key[3]:3d} | {f('triton')} | {f('cuda')} | "
              f"{(ts['ms'] * 1e3 if ts else float('nan')):10.1f}")
PYEOF
  fi
  if [ -f "$OUTDIR/rows.log" ]; then
    echo
    echo "new rows on the device (ms):"
    grep -E "^(smollm2|gemma):|^stand-in" "$OUTDIR/rows.log" || echo "(no summary line: see rows.log)"
  fi
  echo
  printf '%-12s %s\n' "step" "status"
  for s in "${STEPS[@]}"; do printf '%-12s %s\n' "$s" "${STATUS[$s]}"; done
  echo "total: $(elapsed)s; logs in $OUTDIR"
}
trap summary EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# ---- environment --------------------------------------------------------------------------
phase "environment"
if "$PY" - <<'PYEOF'; then
import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)
assert torch.cuda.is_available(), "torch sees no CUDA device"
p = torch.cuda.get_device_properties(0)
print("device", p.name, f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs")
for name in ("triton", "transformers", "pytest", "hypothesis"):
    try:
        print(name, __import__(name).__version__)
    except Exception as e:
        print(name, "missing:", type(e).__name__)
PYEOF
  note environment ok
else
  note environment "FAILED: no usable torch + CUDA device"
  exit 2
fi
command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -1 || echo "nvcc not on PATH"
ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
export TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-8}"
HAVE_PYTEST=0
"$PY" -c "import pytest, hypothesis" 2>/dev/null && HAVE_PYTEST=1

# ---- 1. build csrc/ in the background -------------------------------------------------------
phase "1. build csrc/ (arch $ARCH), in the background"
rm -f regexlm/_C*.so
( timeout 240 "$PY" setup.py build_ext --inplace >"$OUTDIR/build.log" 2>&1 && ls regexlm/_C*.so >/dev/null 2>&1 ) &
BUILD_PID=$!
BUILT=""
wait_build() {  # sets BUILT to ok / failed once; falls back to the JIT build
  [ -n "$BUILT" ] && return
  if wait "$BUILD_PID"; then
    BUILT=ok; note build "ok (setup.py build_ext, $(elapsed)s)"
    return
  fi
  echo "setup.py build failed or built nothing; tail of the log:"; tail -n 15 "$OUTDIR/build.log"
  echo "trying the JIT build (torch.utils.cpp_extension.load) ..."
  if timeout "$(budget 200 150)" "$PY" -c "
from regexlm.ops.sample_cuda import unavailable_reason
r = unavailable_reason(build=True)
print('JIT:', r or 'ok')
raise SystemExit(0 if r is None else 1)" >"$OUTDIR/jit.log" 2>&1; then
    BUILT=ok; export REGEXLM_CUDA_JIT=1; note build "ok (JIT, $(elapsed)s)"
  else
    tail -n 15 "$OUTDIR/jit.log"; BUILT=failed; note build "FAILED (see build.log, jit.log)"
  fi
}

# ---- 2. split rows, many at once ------------------------------------------------------------
split_rows() {  # $1: backends (comma-separated)
  timeout "$(budget 90 200)" "$PY" - "$1" <<'PYEOF' 2>&1 | tee -a "$OUTDIR/split_rows.log" | tail -n 8
import sys, time, torch
from regexlm.ops import grid
from regexlm.ops.reference import sample_step_reference
from regexlm.ops.testing import random_tables, step_inputs
backends = sys.argv[1].split(",")
B, V = 1024, 131072
tables = random_tables(32, V, 128, allow_prob=0.6, seed=1, device="cuda")
a = step_inputs(B, V, tables, dtype=torch.bfloat16, seed=1, device="cuda")
a.pop("noise")
g = torch.Generator().manual_seed(2)
a["temperature"] = (torch.rand(B, generator=g) * 1.5).cuda()  # some below 0.05: near greedy
a["temperature"][::7] = 0.0
a["top_k"] = torch.randint(0, 80, (B,), generator=g, dtype=torch.int32).cuda()
a["top_p"] = torch.where(torch.rand(B, generator=g) < 0.5, 1.0, 0.9).cuda()
a["budgets"] = torch.randint(-1, 6, (B,), generator=g, dtype=torch.int32).cuda()
want = sample_step_reference(**a)
bad = 0
for name in backends:
    if name == "triton":
        from regexlm.ops.sample_triton import sample_step_triton as fn
    else:
        from regexlm.ops.sample_cuda import sample_step_cuda as fn
    t0 = time.perf_counter()
    for launch in range(24):
        got = fn(**a, split=(4, 16, 33)[launch % 3])  # 4 to 33 programs per row
        diff = int((got.tokens != want.tokens).sum()) + int((got.next_states != want.next_states).sum())
        bad += diff
        if diff:
            print(f"{name} launch {launch}: {diff} differences from the reference")
    torch.cuda.synchronize()
    left = sum(int(b.abs().sum()) for b in grid._COUNTERS.values())
    bad += left
    print(f"{name}: {B} rows x up to 33 programs, 24 launches, {time.perf_counter() - t0:.2f} s; "
          f"counters left non-zero: {left}")
print("SPLIT", "ok" if bad == 0 else f"FAILED ({bad})")
raise SystemExit(1 if bad else 0)
PYEOF
}
phase "2. split-row protocol, many rows at once (Triton)"
if split_rows triton; then note split_rows "ok: triton"; else note split_rows "FAILED: triton (see split_rows.log)"; fi

# ---- 3. end to end ----------------------------------------------------------------------------
phase "3. end to end: one Generator batch per backend"
wait_build
if [ "$BUILT" = ok ]; then
  phase "2b. split-row protocol (CUDA)"
  if split_rows cuda; then STATUS[split_rows]="${STATUS[split_rows]}, cuda"; else STATUS[split_rows]="${STATUS[split_rows]}; FAILED: cuda"; fi
fi
TOK="${REGEXLM_GPU_TOKENIZER:-$ROOT/.cache/gpu_check/tokenizer}"
TOKARG=()
[ -d "$TOK" ] && TOKARG=(--tokenizer "$TOK")
E2E_BACKENDS="torch,triton"
[ "$BUILT" = ok ] && E2E_BACKENDS="torch,triton,cuda"
timeout "$(budget 120 150)" "$PY" bench/gpu_e2e.py --device cuda --backends "$E2E_BACKENDS" ${TOKARG[@]+"${TOKARG[@]}"} \
  2>&1 | tee "$OUTDIR/e2e.log" | tail -n 12
rc=${PIPESTATUS[0]}
E2E_LINE=$(grep -E "^(torch|triton|cuda) " "$OUTDIR/e2e.log" | awk '{printf "%s %s/%s viol, same %s; ", $1, $5, $3, $12}')
if [ "$rc" -eq 0 ]; then note e2e "ok: $E2E_LINE"; else note e2e "FAILED (rc=$rc): ${E2E_LINE:-see e2e.log}"; fi

# ---- 4. GPU tests ---------------------------------------------------------------------------
phase "4. GPU tests"
if [ "$HAVE_PYTEST" = 1 ]; then
  timeout "$(budget 170 60)" "$PY" -m pytest -m gpu -q -p no:cacheprovider --durations=5 \
    tests/ops/test_sample_step.py tests/ops/test_gpu.py 2>&1 | tee "$OUTDIR/tests.log" | tail -n 25
  rc=${PIPESTATUS[0]}
  SUMMARY=$(grep -E "passed|failed|error" "$OUTDIR/tests.log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then note tests "ok: $SUMMARY"; else note tests "FAILED (rc=$rc): $SUMMARY"; fi
else
  echo "pytest or hypothesis is not installed: running the equality check directly"
  timeout "$(budget 120 60)" "$PY" - "$BUILT" <<'PYEOF' 2>&1 | tee "$OUTDIR/tests.log" | tail -n 20
import sys, torch
from regexlm.ops import sample_step
from regexlm.ops.reference import sample_step_reference
from regexlm.ops.testing import random_tables, step_inputs
backends = ["triton"] + (["cuda"] if sys.argv[1] == "ok" else [])
bad = 0
for V in (49152, 262144):
    for dtype in (torch.float32, torch.bfloat16):
        for seeded in (False, True):
            tables = random_tables(16, V, 64, seed=V % 97, device="cuda")
            a = step_inputs(8, V, tables, dtype=dtype, seed=V % 89, device="cuda")
            a["top_k"][::2] = 50
            a["temperature"][::3] = 0.0
            if seeded:
                a.pop("noise")
            want = sample_step_reference(**a)
            for backend in backends:
                try:
                    got = sample_step(**a, backend=backend)
                    same = torch.equal(got.tokens, want.tokens) and torch.equal(got.next_states, want.next_states)
                except Exception as e:
                    same = False; print(backend, V, dtype, "error:", e)
                bad += not same
                print(backend, V, dtype, "seeds" if seeded else "noise", "equal" if same else "DIFFERENT")
raise SystemExit(1 if bad else 0)
PYEOF
  if [ "${PIPESTATUS[0]}" -eq 0 ]; then note tests "ok (direct check)"; else note tests "FAILED (direct check)"; fi
fi

# ---- 5. the lazy index's new rows on the device ----------------------------------------------
phase "5. new rows on the device (bench/bench_device_rows.py)"
ROWS_TOKS=()
ROWS_ARGS=()
if [ -d "$TOK" ]; then ROWS_TOKS+=(smollm2); ROWS_ARGS+=(--smollm2-tokenizer "$TOK"); fi
if [ -d "$ROOT/.cache/gpu_check/gemma" ]; then
  ROWS_TOKS+=(gemma); ROWS_ARGS+=(--gemma-tokenizer "$ROOT/.cache/gpu_check/gemma")
fi
if [ "${#ROWS_TOKS[@]}" -eq 0 ]; then
  note rows "skipped: no tokenizer folder under .cache/gpu_check (see the header)"
elif [ "$(left)" -gt 90 ]; then
  ROWS_LIST=$(IFS=,; echo "${ROWS_TOKS[*]}")
  timeout "$(budget 110 70)" "$PY" bench/bench_device_rows.py --device cuda --tokenizers "$ROWS_LIST" \
    "${ROWS_ARGS[@]}" --json "$OUTDIR/rows.json" 2>&1 | tee "$OUTDIR/rows.log" | grep -E "^(smollm2|gemma):|^stand-in|Error"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then note rows "ok ($ROWS_LIST)"; else note rows "FAILED or cut short (rc=$rc; see rows.log)"; fi
else
  note rows "skipped: out of time"
fi

# ---- 6. benchmark ---------------------------------------------------------------------------
phase "6. bench/bench_ops.py --quick"
if [ "$(left)" -gt 30 ]; then
  timeout "$(budget 120 10)" "$PY" bench/bench_ops.py --device cuda --quick --rep-ms 30 \
    --json "$OUTDIR/bench.json" 2>&1 | tee "$OUTDIR/bench.log" | tail -n 12
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then note bench ok; else note bench "incomplete (rc=$rc; partial rows in bench.log)"; fi
else
  note bench "skipped: out of time"
fi
# the summary table is printed by the EXIT trap
