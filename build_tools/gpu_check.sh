#!/usr/bin/env bash
# The one GPU script: on the GPU box, build with every core, run the benchmarks (ops, fused, fused AdamW,
# the fused linear + cross entropy, gemm against cuBLAS, the realistic-size model speed), the CPU and
# GPU tests and the demo, write logs and JSON to OUT_DIR, and print a summary table last.
#   bash build_tools/gpu_check.sh OUT_DIR
set -uo pipefail
OUT_DIR=$(realpath -m "${1:-gpu_check_out}")
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export GEMS_AOT_JOBS=${GEMS_AOT_JOBS:-$(nproc)}
export PYTHONUNBUFFERED=1
# The GPU box's CXX is a wrapper (/opt/gcc/bin/g++) whose header search order produced an
# extension that crashed on returning strings to torch (seen 2026-11-25); the system g++ of the
# same version works.
if [ -x /usr/bin/g++ ]; then export CXX=/usr/bin/g++ CC=/usr/bin/gcc; fi
cd "$(dirname "$0")/.."

# The box has no network: optional packages (matplotlib for the plots, flag_gems) come as wheels in .whl/.
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps .whl/*.whl >"$OUT_DIR/wheels.log" 2>&1 || tail -5 "$OUT_DIR/wheels.log"
fi

t0=$(date +%s)
echo "== build (jobs: $GEMS_AOT_JOBS)"
if ! $PY -m pip install -v --no-build-isolation --no-deps -e . >"$OUT_DIR/build.log" 2>&1; then
  tail -60 "$OUT_DIR/build.log"; echo "BUILD FAILED"; exit 1
fi
grep "\[gems-aot\]" "$OUT_DIR/build.log" | tail -3
t1=$(date +%s)
echo "== second build (nothing changed: no kernel may recompile)"
$PY -m pip install -v --no-build-isolation --no-deps -e . >"$OUT_DIR/rebuild.log" 2>&1
grep "\[gems-aot\].*compiled" "$OUT_DIR/rebuild.log" | tail -2 | cut -c1-3000
t2=$(date +%s)

echo "== benchmark"
$PY build_tools/bench.py --out "$OUT_DIR" >"$OUT_DIR/bench.log" 2>&1 || tail -30 "$OUT_DIR/bench.log"
$PY -m gems_aot bench --out "$OUT_DIR" --layouts contiguous,transposed --no-flaggems \
  >"$OUT_DIR/bench_ops.log" 2>&1 || tail -30 "$OUT_DIR/bench_ops.log"
# Class-index losses at LLM sizes: 4096 and 16384 rows of a 32000 and a 128256 vocabulary.
$PY -m gems_aot bench --out "$OUT_DIR/losses" --ops nll_loss_forward,nll_loss_backward,cross_entropy --no-flaggems \
  --sizes 131072000,524288000,525336576,2101346304 >"$OUT_DIR/bench_losses.log" 2>&1 || tail -30 "$OUT_DIR/bench_losses.log"
$PY build_tools/bench_fused.py --out "$OUT_DIR" >"$OUT_DIR/bench_fused.log" 2>&1 || tail -30 "$OUT_DIR/bench_fused.log"
$PY build_tools/bench_optim.py --out "$OUT_DIR" >"$OUT_DIR/bench_optim.log" 2>&1 || tail -30 "$OUT_DIR/bench_optim.log"
$PY build_tools/bench_linear_ce.py --out "$OUT_DIR" >"$OUT_DIR/bench_linear_ce.log" 2>&1 || tail -30 "$OUT_DIR/bench_linear_ce.log"
$PY -m gems_aot bench --family gemm --out "$OUT_DIR" >"$OUT_DIR/bench_gemm.log" 2>&1 || tail -30 "$OUT_DIR/bench_gemm.log"
$PY -m gems_aot models --speed --out "$OUT_DIR" >"$OUT_DIR/speed.log" 2>&1 || tail -30 "$OUT_DIR/speed.log"
t3=$(date +%s)
echo "== tests"
$PY -m pytest tests -q -p no:cacheprovider -rfE --junitxml="$OUT_DIR/tests.xml" >"$OUT_DIR/tests.log" 2>&1
tests_rc=$?
grep -E "^(FAILED|ERROR)" "$OUT_DIR/tests.log" | head -40
tail -1 "$OUT_DIR/tests.log"
t4=$(date +%s)

echo "== demo"
$PY -m gems_aot demo >"$OUT_DIR/demo.log" 2>&1 || tail -30 "$OUT_DIR/demo.log"
grep -B2 -A3 "^| model" "$OUT_DIR/demo.log"; tail -1 "$OUT_DIR/demo.log"

echo
echo "== summary"
$PY -m gems_aot info
echo "build $((t1 - t0)) s, rebuild $((t2 - t1)) s, bench $((t3 - t2)) s, tests $((t4 - t3)) s"
grep "\[gems-aot\].*compiled" "$OUT_DIR/rebuild.log" | tail -2 | cut -c1-3000
tail -1 "$OUT_DIR/tests.log"
cat "$OUT_DIR/bench.md" 2>/dev/null || echo "no benchmark results"
grep -A20 "^| summary" "$OUT_DIR/bench_ops.md" 2>/dev/null || echo "no op benchmark results"
cat "$OUT_DIR/losses/bench_ops.md" 2>/dev/null || echo "no loss benchmark results"
cat "$OUT_DIR/bench_fused.md" 2>/dev/null || echo "no fused benchmark results"
cat "$OUT_DIR/bench_optim.md" 2>/dev/null || echo "no optimizer benchmark results"
cat "$OUT_DIR/bench_linear_ce.md" 2>/dev/null || echo "no fused linear + cross entropy benchmark results"
grep -A30 "^| summary" "$OUT_DIR/bench_gemm.md" 2>/dev/null || echo "no gemm benchmark results"
cat "$OUT_DIR/speed.md" 2>/dev/null || echo "no model speed results"
exit $tests_rc
