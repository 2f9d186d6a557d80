#!/usr/bin/env bash
# Validate fcsp on a real NVIDIA GPU (an H100 with python3 + torch + cupy + nvidia-ml-py, gcc, cmake): build
# libfcsp.so from this checkout, run bench/gpu_validate.py (PyTorch, CuPy, NVML checks) and bench/run_bench.py
# --real (the interposer's added cost over the real driver). Needs no network and no pip install of fcsp.
#
#   bash bench/gpu_validate.sh OUTDIR
#
# Writes OUTDIR/gpu_validate.log (everything printed), OUTDIR/gpu_validate.json (the checks) and
# OUTDIR/run_bench_real.json (the overhead table). Exit status: 0 when every check passed and every asserted
# overhead goal was met, 1 otherwise, 2 when the build failed.
# Environment: FCSP_BUILD_DIR (default /tmp/fcsp-build), PYTHON (default python3), BENCH_ARGS (extra
# arguments for run_bench.py, e.g. --quick), SKIP_BENCH=1 / SKIP_VALIDATE=1 to run only one half.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: bash bench/gpu_validate.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FCSP_BUILD_DIR:-/tmp/fcsp-build}
PY=${PYTHON:-python3}
LOG=$OUT/gpu_validate.log
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

echo "== fcsp GPU validation, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) || rev="not a git checkout"
if git -C "$REPO" status --porcelain 2>/dev/null | grep -q .; then rev="$rev, with local changes"; fi
echo "repo: $REPO ($rev)"
echo "host: $(uname -srm), $(nproc) CPUs"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 || true
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>&1 | sed 's/^/  running on the GPU: /' || true
command -v nvcc >/dev/null && nvcc --version | tail -n 1
"$PY" - <<'EOF' 2>&1 || true
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "cupy", "pynvml"):
    try:
        m = importlib.import_module(name)
        print(f"  {name} {getattr(m, '__version__', '?')}")
    except Exception as e:  # a missing package fails its checks later, with a clear message
        print(f"  {name}: NOT IMPORTABLE ({e})")
EOF

echo
echo "== building libfcsp.so in $BUILD"
t0=$(date +%s)
if ! cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake_configure.log" 2>&1; then
    cat "$OUT/cmake_configure.log"
    echo "FAIL: cmake configure (log above)"
    exit 2
fi
if ! cmake --build "$BUILD" -j16 --target fcsp >"$OUT/cmake_build.log" 2>&1; then
    tail -n 60 "$OUT/cmake_build.log"
    echo "FAIL: cmake build of target fcsp (log above)"
    exit 2
fi
LIB=$BUILD/fcsp_core/native/interposer/libfcsp.so
if [ ! -f "$LIB" ]; then
    echo "FAIL: the build produced no $LIB"
    exit 2
fi
echo "built $LIB in $(($(date +%s) - t0)) s"

status=0
if [ "${SKIP_VALIDATE:-0}" != 1 ]; then
    echo
    echo "== bench/gpu_validate.py (PyTorch, CuPy, NVML under fcsp)"
    t0=$(date +%s)
    timeout 900 env PYTHONUNBUFFERED=1 "$PY" "$REPO/bench/gpu_validate.py" --lib "$LIB" \
        --json "$OUT/gpu_validate.json"
    rc=$?
    echo "gpu_validate.py: exit $rc after $(($(date +%s) - t0)) s"
    [ $rc -eq 0 ] || status=1
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
    echo
    echo "== bench/run_bench.py --real (added cost over the real driver)"
    t0=$(date +%s)
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of words on purpose
    timeout 900 env PYTHONUNBUFFERED=1 "$PY" "$REPO/bench/run_bench.py" --real --lib "$LIB" --assert \
        --json "$OUT/run_bench_real.json" ${BENCH_ARGS:-}
    rc=$?
    echo "run_bench.py --real: exit $rc after $(($(date +%s) - t0)) s"
    [ $rc -eq 0 ] || status=1
fi

echo
if [ $status -eq 0 ]; then
    echo "== RESULT: all checks passed, all asserted overhead goals met"
else
    echo "== RESULT: FAILURES (see above); log in $LOG"
fi
exit $status
