#!/usr/bin/env bash
# GPU check of the per-step kernels, in one call of at most 8 minutes:
#   1. build csrc/ (setup.py build_ext --inplace; JIT through torch as a fallback)
#   2. GPU tests: Triton and CUDA against the torch reference at V = 49,152 / 128,256 / 262,144
#   3. bench/bench_ops.py (per-step cost, GB/s against one pass over the logits)
#   4. a short table, printed last
# Needs: a CUDA GPU, torch (CUDA build), triton, nvcc. Installs nothing; uses PYTHONPATH=.
# Usage: bash bench/gpu_check.sh [--quick]     (run from anywhere; results in $OUT or /tmp)
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
unset TRITON_INTERPRET
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
OUTDIR="${OUT:-/tmp}/regexlm_gpu_check"
mkdir -p "$OUTDIR"
QUICK=""
[ "${1:-}" = "--quick" ] && QUICK="--quick"
START=$(date +%s)
declare -A STATUS

elapsed() { echo $(( $(date +%s) - START )); }
phase() { echo; echo "=== [$(elapsed)s] $*"; }

phase "environment"
"$PY" - <<'PYEOF' || { echo "no usable torch + CUDA device; stopping"; exit 2; }
import torch, sys
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)
assert torch.cuda.is_available(), "torch sees no CUDA device"
p = torch.cuda.get_device_properties(0)
print("device", p.name, f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB")
try:
    import triton; print("triton", triton.__version__)
except Exception as e:
    print("triton missing:", e)
PYEOF
command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -1 || echo "nvcc not on PATH"
ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
export TORCH_CUDA_ARCH_LIST="$ARCH"
export MAX_JOBS="${MAX_JOBS:-8}"

phase "1. build csrc/ (arch $ARCH)"
rm -f regexlm/_C*.so
if timeout 200 "$PY" setup.py build_ext --inplace >"$OUTDIR/build.log" 2>&1 \
   && ls regexlm/_C*.so >/dev/null 2>&1; then
  STATUS[build]="ok (setup.py build_ext)"
else
  echo "setup.py build failed or built nothing; tail of the log:"; tail -n 25 "$OUTDIR/build.log"
  echo "trying the JIT build (torch.utils.cpp_extension.load) ..."
  if timeout 200 "$PY" -c "
from regexlm.ops.sample_cuda import unavailable_reason
r = unavailable_reason(build=True)
print('JIT:', r or 'ok')
raise SystemExit(0 if r is None else 1)" >"$OUTDIR/jit.log" 2>&1; then
    STATUS[build]="ok (JIT)"; export REGEXLM_CUDA_JIT=1
  else
    tail -n 25 "$OUTDIR/jit.log"; STATUS[build]="FAILED"
  fi
fi
echo "build: ${STATUS[build]}"

phase "2. GPU tests"
TEST_FILES="tests/ops/test_gpu.py tests/ops/test_sample_step.py"
if "$PY" -c "import pytest" 2>/dev/null; then
  timeout 170 "$PY" -m pytest -m gpu -q -p no:cacheprovider $TEST_FILES 2>&1 | tee "$OUTDIR/tests.log" | tail -n 30
  rc=${PIPESTATUS[0]}
  SUMMARY=$(grep -E "passed|failed|error" "$OUTDIR/tests.log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then STATUS[tests]="ok: $SUMMARY"; else STATUS[tests]="FAILED (rc=$rc): $SUMMARY"; fi
else
  echo "pytest is not installed: running the equality check directly"
  timeout 170 "$PY" - <<'PYEOF' 2>&1 | tee "$OUTDIR/tests.log"
import torch
from regexlm.ops import sample_step
from regexlm.ops.reference import sample_step_reference
from tests.ops.test_gpu import _batch
bad = 0
for backend in ("triton", "cuda"):
    for V in (49152, 128256, 262144):
        for dtype in (torch.float32, torch.bfloat16):
            a = _batch(8, V, dtype, seed=V % 97)
            want = sample_step_reference(**a)
            try:
                got = sample_step(**a, backend=backend)
                same = torch.equal(got.tokens, want.tokens) and torch.equal(got.next_states, want.next_states)
            except Exception as e:
                same = False; print(backend, V, dtype, "error:", e)
            bad += not same
            print(backend, V, dtype, "equal" if same else "DIFFERENT")
raise SystemExit(1 if bad else 0)
PYEOF
  if [ "${PIPESTATUS[0]}" -eq 0 ]; then STATUS[tests]="ok (direct check)"; else STATUS[tests]="FAILED (direct check)"; fi
fi

phase "3. bench/bench_ops.py $QUICK"
left=$(( 470 - $(elapsed) ))
[ "$left" -lt 60 ] && QUICK="--quick"
[ "$left" -lt 30 ] && left=30
timeout "$left" "$PY" bench/bench_ops.py --device cuda $QUICK --rep-ms 40 --json "$OUTDIR/bench.json" \
  2>&1 | tee "$OUTDIR/bench.log" | tail -n 12
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then STATUS[bench]="ok"; else STATUS[bench]="incomplete (rc=$rc; partial rows in bench.log)"; fi

phase "4. summary"
"$PY" - "$OUTDIR" <<'PYEOF'
import json, os, re, sys
out = sys.argv[1]
rows = []
path = os.path.join(out, "bench.json")
if os.path.exists(path):
    rows = json.load(open(path))
else:  # fall back to the printed lines of a cut-short run
    pat = re.compile(r"^(\S+)\s+(\S+)\s+V=\s*(\d+) B=\s*(\d+) (\S+)\s+([\d.]+) us\s+([\d.]+) GB/s x([\d.]+) of one pass, ([\d.]+)x")
    for line in open(os.path.join(out, "bench.log"), errors="replace"):
        m = pat.match(line)
        if m:
            c, d, V, B, name, us, gb, x1, sp = m.groups()
            rows.append(dict(config=c, dtype=d, V=int(V), B=int(B), backend=name, ms=float(us) / 1e3,
                             gbps=float(gb), vs_one_pass=float(x1), speedup_vs_torch=float(sp)))
if rows:
    dev = rows[0].get("device", "?")
    print(f"per-step cost on {dev} (us; 'x1p' = multiple of one pass over the logits; "
          f"'vs sort' = speed-up over the sort-based torch pipeline)")
    print(f"{'config':9s} {'dtype':8s} {'V':>6s} {'B':>3s} | {'triton':>8s} {'x1p':>5s} {'vs sort':>7s} | "
          f"{'cuda':>8s} {'x1p':>5s} {'vs sort':>7s} | {'torch':>8s} {'GB/s best':>9s}")
    cells = {}
    for r in rows:
        cells.setdefault((r["config"], r["dtype"], r["V"], r["B"]), {})[r["backend"]] = r
    for key in sorted(cells):
        c = cells[key]
        def f(name):
            r = c.get(name)
            return (f"{r['ms'] * 1e3:8.1f} {r['vs_one_pass']:5.2f} {r['speedup_vs_torch']:7.2f}"
                    if r else f"{'-':>8s} {'-':>5s} {'-':>7s}")
        fused = [c[n] for n in ("triton", "cuda") if n in c]
        best = max((r["gbps"] for r in fused), default=0.0)
        ts = c.get("torch-sort")
        print(f"{key[0]:9s} {key[1]:8s} {key[2]:6d} {key[3]:3d} | {f('triton')} | {f('cuda')} | "
              f"{(ts['ms'] * 1e3 if ts else float('nan')):8.1f} {best:9.1f}")
else:
    print("no benchmark rows")
PYEOF
echo
echo "build: ${STATUS[build]}"
echo "tests: ${STATUS[tests]}"
echo "bench: ${STATUS[bench]}"
echo "total: $(elapsed)s; logs in $OUTDIR"
