#!/usr/bin/env bash
# The inference bench on a real GPU, one command: builds libfcsp.so and the probes from this checkout, then runs
# bench/gpu_inference.py (decode tenants, trainers, capture storms; native / time-slice / spatial) and prints its
# table. Keeps OUTDIR/gpu_inference.json and OUTDIR/gpu_inference.log.
#   bash bench/gpu_inference.sh OUTDIR [extra gpu_inference.py arguments]
# With BASE_REPO=DIR (another checkout, e.g. the commit before a change) it also runs bench/run_bench.py --real
# --quick against both builds: the launch overhead without a cap, before and after.
set -uo pipefail
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FCSP_BUILD_DIR:-/tmp/fcsp-build}
exec > >(tee -a "$OUT/gpu_inference.log") 2>&1
build() { # SRC DIR
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release >/dev/null 2>&1 &&
        cmake --build "$2" -j16 --target fcsp fcsp_probe fcsp_capture_probe >"$2.log" 2>&1 ||
        cmake --build "$2" -j16 --target fcsp fcsp_probe >"$2.log" 2>&1 || { tail -40 "$2.log"; exit 2; }
}
build "$REPO" "$BUILD"
LIB=$BUILD/fcsp_core/native/interposer/libfcsp.so
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ -n "${BASE_REPO:-}" ]; then
    build "$BASE_REPO" "$BUILD-base"
    for which in base new; do
        lib=$LIB; [ $which = base ] && lib=$BUILD-base/fcsp_core/native/interposer/libfcsp.so
        echo "== run_bench --real --quick ($which)"
        python3 "$REPO/bench/run_bench.py" --real --quick --lib "$lib" --json "$OUT/run_bench_$which.json" 2>&1 | tail -n 30
    done
fi
python3 "$REPO/bench/gpu_inference.py" --lib "$LIB" --capture-probe "$BUILD/fcsp_core/native/tools/fcsp-capture-probe" \
    --out "$OUT" "$@"
