#!/usr/bin/env bash
# The roads past a memory cap (issue 12) on a real GPU: builds libfcsp.so and bench/gpu_bypass.c, walks every road
# once without fcsp and once under a cap (default 1 GiB), and prints per road the device's own figure for the
# process (NVML per-process used memory, the road's part: minus what the process held at its start, i.e. its
# context) next to fcsp's charge, plus the driver-rule probes (when pools give memory back, graph memory after
# destruction and trim, module globals, the rounding of tiny allocations).
#
#   bash bench/gpu_bypass.sh OUTDIR
#
# Writes OUTDIR/gpu_bypass.log (everything), OUTDIR/<road>-{nofcsp,fcsp}.txt (each walk's lines) and
# OUTDIR/gpu_bypass.md (the table). Exit status: 0 when, on every road under fcsp, the road's memory never passed
# the cap and fcsp's charge matched the driver's figure at the end; 1 otherwise; 2 when the build failed.
# Environment: FCSP_BUILD_DIR (default /tmp/fcsp-build), CAP (default 1G), PYTHON (default python3).
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: bash bench/gpu_bypass.sh OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FCSP_BUILD_DIR:-/tmp/fcsp-build}
CAP=${CAP:-1G}
PY=${PYTHON:-python3}
exec > >(tee -a "$OUT/gpu_bypass.log") 2>&1

echo "== fcsp bypass roads, $(date -u +%Y-%m-%dT%H:%M:%SZ), cap $CAP"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 || true
if ! cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$OUT/cmake.log" 2>&1 ||
    ! cmake --build "$BUILD" -j16 --target fcsp >>"$OUT/cmake.log" 2>&1; then
    tail -n 40 "$OUT/cmake.log"
    echo "FAIL: build of libfcsp.so"
    exit 2
fi
LIB=$BUILD/fcsp_core/native/interposer/libfcsp.so
EXE=$BUILD/gpu_bypass
if ! cc -std=c11 -O2 -Wall -Wextra -Werror -I"$REPO/fcsp_core/native/include" -o "$EXE" "$REPO/bench/gpu_bypass.c" \
    -ldl; then
    echo "FAIL: build of bench/gpu_bypass.c"
    exit 2
fi

# ROAD ARG: one walk without fcsp, one under the cap (a fresh region each time)
walk() {
    local road=$1 arg=$2
    echo "-- $road $arg without fcsp"
    "$EXE" "$road" "$arg" >"$OUT/$road-nofcsp.txt" 2>&1
    echo "   exit $?"
    local region
    region=$(mktemp -d)
    echo "-- $road $arg under FCSP_MEM_LIMIT=$CAP"
    FCSP_REGION_DIR=$region FCSP_MEM_LIMIT=$CAP FCSP_TENANT="bypass-$road" LD_PRELOAD=$LIB \
        "$EXE" "$road" "$arg" >"$OUT/$road-fcsp.txt" 2>&1
    echo "   exit $?"
    rm -rf "$region"
}

ROADS="vmm:512 vmm-retain:512 pool:768 graph:768 ipc:768 granularity:100000 module:512"
PROBES="pool-rules:256 vmm-share:512 vmm-share-crash:512 vmm-share-fd-only:512"
ngpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
[ "${ngpus:-1}" -ge 2 ] && ROADS="$ROADS stream:600"
for ra in $ROADS $PROBES; do
    walk "${ra%%:*}" "${ra##*:}"
done

echo
"$PY" - "$OUT" "$CAP" "$ROADS" "$PROBES" <<'EOF'
import sys
from pathlib import Path

out, cap_text, roads, probes = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
cap = int(cap_text[:-1]) * units[cap_text[-1]] if cap_text[-1] in units else int(cap_text)
MiB = 1 << 20


def steps(path: Path) -> list[dict[str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        w = line.split()
        if w and w[0] == "step":
            rows.append(dict(x.split("=", 1) for x in w[1:]))
    return rows


def road_part(rows):
    """(peak of the road's own device memory, per step) for the process's own lines on device 0 (not those of
    the processes it starts: ipc-import, vmm-share-export)."""
    mine = [r for r in rows if r["dev_index"] == "0" and rows and r["road"] == rows[0]["road"]]
    base = int(mine[0]["dev"]) if mine else 0
    return base, mine


lines = [
    f"| road | without fcsp: road's peak (driver) | under {cap_text}: road's peak (driver) | fcsp's peak | "
    "refused steps | at the last step before teardown: driver / fcsp | end: driver / fcsp |",
    "|---|---|---|---|---|---|---|",
]
ok = True
for ra in roads + probes:
    road = ra.split(":")[0]
    try:
        base0, free_rows = road_part(steps(out / f"{road}-nofcsp.txt"))
        base1, capped = road_part(steps(out / f"{road}-fcsp.txt"))
    except (OSError, KeyError, ValueError) as exc:
        lines.append(f"| {road} | (no result: {exc}) | | | | | |")
        ok = False
        continue
    if not capped:
        lines.append(f"| {road} | (no steps) | | | | | |")
        ok = False
        continue
    peak_free = max(int(r["dev"]) - base0 for r in free_rows) if free_rows else 0
    peak_cap = max(int(r["dev"]) - base1 for r in capped)
    peak_fcsp = max(int(r["fcsp"]) for r in capped)
    refused = sum(r["rc"] == "CUDA_ERROR_OUT_OF_MEMORY" for r in capped)
    held = max(capped, key=lambda r: int(r["dev"]))
    end = capped[-1]
    lines.append(
        f"| {road} | {peak_free / MiB:.0f} MiB | {peak_cap / MiB:.0f} MiB | {peak_fcsp / MiB:.0f} MiB | {refused} | "
        f"{(int(held['dev']) - base1) / MiB:.1f} / {int(held['fcsp']) / MiB:.1f} MiB ({held['what']}) | "
        f"{(int(end['dev']) - base1) / MiB:.1f} / {int(end['fcsp']) / MiB:.1f} MiB |"
    )
    if ra in roads and peak_cap > cap:
        ok = False
        lines.append(f"|  | FAIL: the road held {peak_cap / MiB:.0f} MiB past the cap | | | | | |")
table = "\n".join(lines)
print(table)
(out / "gpu_bypass.md").write_text(table + "\n")
print("\nprobe lines (poolmem, graphmem, granularity):")
for ra in roads + probes:
    road = ra.split(":")[0]
    for kind in ("nofcsp", "fcsp"):
        p = out / f"{road}-{kind}.txt"
        if p.exists():
            for line in p.read_text().splitlines():
                if line.split(" ", 1)[0] in ("poolmem", "graphmem", "granularity"):
                    print(f"  {road}/{kind}: {line}")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
