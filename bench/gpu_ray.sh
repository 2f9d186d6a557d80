#!/usr/bin/env bash
# fcsp's Ray integration on a real GPU, on a machine without network: build libfcsp from this checkout with
# cmake, put Ray (and what it needs beyond the machine's image) on PYTHONPATH from a tarball, run
# bench/gpu_ray.py (the demo, PyTorch tasks and actors under caps, 11 x 12 GiB actors, a killed actor
# reclaimed, SM shares 30/70 under load) and print its table.
#
#   bash bench/gpu_ray.sh OUTDIR [SITE_TARBALL]
#
# SITE_TARBALL: a .tar.xz of a site-packages directory holding ray and its missing dependencies (made where
# pip works: `pip install --target DIR --python-version 3.12 --only-binary=:all: --no-deps WHEELS...`, then
# `tar cJf site.tar.xz -C DIR .`). Without it, ray must already be importable.
# Writes OUTDIR/gpu_ray.log (everything printed), OUTDIR/gpu_ray.json (the rows), OUTDIR/fcsp-node.log.
# Environment: FCSP_BUILD_DIR (default /tmp/fcsp-ray-build), PYTHON (default python3), GPU_RAY_ARGS (extra
# arguments for gpu_ray.py, e.g. --sim). Exit status: gpu_ray.py's (0: every row passed), 2 if setup failed.
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash bench/gpu_ray.sh OUTDIR [SITE_TARBALL]" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FCSP_BUILD_DIR:-/tmp/fcsp-ray-build}
PY=${PYTHON:-python3}
exec > >(tee "$OUT/gpu_ray.log") 2>&1

echo "== fcsp on Ray, real GPU, $(date -u +%Y-%m-%dT%H:%M:%SZ); $(uname -srm), $(nproc) CPUs"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 || true
SITE=
if [ $# -eq 2 ]; then
    SITE=$BUILD/site
    mkdir -p "$SITE"
    t0=$(date +%s)
    tar -xJf "$2" -C "$SITE" 2>/dev/null ||
        "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$2" "$SITE" ||
        { echo "FAIL: cannot unpack $2"; exit 2; }
    echo "unpacked $2 into $SITE in $(($(date +%s) - t0)) s"
fi
export PYTHONPATH=${SITE:+$SITE:}$REPO:$REPO/integrations/ray:$REPO/integrations/slurm${PYTHONPATH:+:$PYTHONPATH}

t0=$(date +%s)
if ! { cmake -S "$REPO" -B "$BUILD/cmake" -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$BUILD/cmake" -j"$(nproc)" &&
    cmake --install "$BUILD/cmake" --prefix "$BUILD/inst"; } >"$OUT/cmake.log" 2>&1; then
    tail -n 40 "$OUT/cmake.log"
    echo "FAIL: cmake (log above)"
    exit 2
fi
export FCSP_LIB_DIR=$BUILD/inst/fcsp_core/lib
# the `fcsp` command, for the node daemon the Ray plugin starts
mkdir -p "$BUILD/bin"
printf '#!/bin/sh\nexec %s -m fcsp_core "$@"\n' "$(command -v "$PY")" >"$BUILD/bin/fcsp"
chmod +x "$BUILD/bin/fcsp"
export PATH=$BUILD/bin:$PATH
echo "built libfcsp into $FCSP_LIB_DIR in $(($(date +%s) - t0)) s"
"$PY" -c 'import ray, fcsp_ray, fcsp_core; print("ray", ray.__version__, "fcsp_core from", fcsp_core.__file__)' ||
    { echo "FAIL: imports"; exit 2; }

# shellcheck disable=SC2086 # GPU_RAY_ARGS is a list of arguments
PYTHONUNBUFFERED=1 timeout 480 "$PY" "$REPO/bench/gpu_ray.py" --out "$OUT" ${GPU_RAY_ARGS:-}
