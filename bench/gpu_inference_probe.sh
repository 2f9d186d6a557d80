#!/usr/bin/env bash
# Facts the compute code relies on, asked of a real GPU (run as root on the H200; no network needed):
#  1. which driver calls an open stream capture tolerates (fcsp-capture-probe matrix), natively;
#  2. a capture storm beside a launching thread, natively and under fcsp caps (fcsp-capture-probe storm);
#  3. MPS: multi-user support, a client's CUDA_MPS_ACTIVE_THREAD_PERCENTAGE against the control daemon's limit,
#     cuMemGetInfo and NVML's per-process figures under MPS, a second uid's client, a faulting client.
#   bash bench/gpu_inference_probe.sh OUTDIR [capture|mps|all]
set -uo pipefail
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
WHAT=${2:-all}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FCSP_BUILD_DIR:-/tmp/fcsp-build}
exec > >(tee -a "$OUT/probe.log") 2>&1
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null 2>&1 &&
    cmake --build "$BUILD" -j16 --target fcsp fcsp_capture_probe >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 2; }
LIB=$BUILD/fcsp_core/native/interposer/libfcsp.so
CP=$BUILD/fcsp_core/native/tools/fcsp-capture-probe
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader

if [ "$WHAT" = capture ] || [ "$WHAT" = all ]; then
    echo "== capture matrix (native)"
    "$CP" matrix >"$OUT/capture_matrix.txt" 2>&1
    grep -v "rc=CUDA_SUCCESS post=CUDA_SUCCESS end=CUDA_SUCCESS" "$OUT/capture_matrix.txt"
    echo "== capture storms"
    for mode in global thread_local relaxed; do "$CP" storm $mode 30; done
    R=$(mktemp -d)
    for sm in 12 25 50; do
        for mode in global relaxed; do
            echo -n "fcsp --sm $sm: "
            LD_PRELOAD=$LIB FCSP_SM_LIMIT=$sm FCSP_REGION_DIR=$R FCSP_TENANT=cap$sm "$CP" storm $mode 30 2>&1 | tail -n 2 | tr '\n' ' '
            echo
        done
    done
fi

if [ "$WHAT" = mps ] || [ "$WHAT" = all ]; then
    echo "== MPS"
    CTL=$(command -v nvidia-cuda-mps-control || echo /usr/local/nvidia/bin/nvidia-cuda-mps-control)
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/fcsp-mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/fcsp-mps-log
    mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
    chmod 755 $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
    ls -l "$CTL" $(dirname "$CTL")/nvidia-cuda-mps-server 2>&1
    "$CTL" -h 2>&1 | head -20
    echo "-- strings mentioning users:"; strings "$CTL" | grep -i -E "multi|user|uid" | head -30
    nvidia-smi -q | grep -i "compute mode"
    cat >/tmp/mpsclient.py <<'PY'
import json, os, sys, time, torch
p = torch.cuda.get_device_properties(0)
free, total = torch.cuda.mem_get_info()
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3): a @ a
torch.cuda.synchronize(); t0 = time.perf_counter()
for _ in range(30): a @ a
torch.cuda.synchronize(); dt = time.perf_counter() - t0
hold = float(sys.argv[1]) if len(sys.argv) > 1 else 0
t1 = time.perf_counter()
while time.perf_counter() - t1 < hold:
    a @ a; torch.cuda.synchronize()
print(json.dumps({"uid": os.getuid(), "pid": os.getpid(), "sms": p.multi_processor_count, "free": free, "total": total,
                  "tflops": 30 * 2 * 8192**3 / dt / 1e12, "env": os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")}))
PY
    cat >/tmp/mpsfault.py <<'PY'
import cupy as cp, time
k = cp.RawKernel(r'extern "C" __global__ void bad(unsigned long long p){ *(int*)p = 1; }', 'bad')
time.sleep(2)
k((1,), (1,), (cp.uint64(16),))
cp.cuda.Device().synchronize()
PY
    python3 /tmp/mpsclient.py | sed 's/^/no MPS: /'
    "$CTL" -d; sleep 1
    echo get_default_active_thread_percentage | "$CTL"
    echo set_default_active_thread_percentage 25 | "$CTL"
    python3 /tmp/mpsclient.py | sed 's/^/server default 25, client no env: /'
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=100 python3 /tmp/mpsclient.py | sed 's/^/server default 25, client env 100: /'
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=10 python3 /tmp/mpsclient.py | sed 's/^/server default 25, client env 10: /'
    SRV=$(echo get_server_list | "$CTL"); echo "server list: $SRV"
    echo "set_active_thread_percentage $SRV 50" | "$CTL"
    echo "get_active_thread_percentage $SRV" | "$CTL"
    python3 /tmp/mpsclient.py | sed 's/^/server set 50, client no env: /'
    CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=80 python3 /tmp/mpsclient.py | sed 's/^/server set 50, client env 80: /'
    echo "-- NVML under MPS, while a client holds 6 s"
    python3 /tmp/mpsclient.py 6 >/tmp/holder.json & HP=$!
    sleep 4
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader
    python3 - <<'PY'
import pynvml
pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
for f in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetMPSComputeRunningProcesses"):
    try: print(f, [(p.pid, p.usedGpuMemory) for p in getattr(pynvml, f)(h)])
    except Exception as e: print(f, "error", e)
PY
    echo "client list: $(echo "get_client_list $SRV" | "$CTL")"
    echo "-- a second uid while root's server has a client"
    id fcspmps >/dev/null 2>&1 || useradd -M fcspmps
    t0=$(date +%s.%N)
    timeout 25 su fcspmps -s /bin/bash -c "CUDA_MPS_PIPE_DIRECTORY=$CUDA_MPS_PIPE_DIRECTORY python3 /tmp/mpsclient.py" | sed 's/^/second uid: /'
    echo "second uid rc=$? after $(echo "$(date +%s.%N) - $t0" | bc) s"
    wait $HP; echo "holder: $(cat /tmp/holder.json)"
    echo "server list now: $(echo get_server_list | "$CTL")"
    echo "-- a faulting client beside a busy one"
    python3 /tmp/mpsclient.py 8 >/tmp/victim.json 2>/tmp/victim.err & VP=$!
    sleep 3
    python3 /tmp/mpsfault.py 2>&1 | tail -n 2 | sed 's/^/faulter: /'
    wait $VP; echo "victim rc=$? out=$(cat /tmp/victim.json) err=$(tail -c 300 /tmp/victim.err)"
    echo "server list after fault: $(echo get_server_list | "$CTL")"
    python3 /tmp/mpsclient.py | sed 's/^/client after fault: /'
    echo "server list: $(echo get_server_list | "$CTL")"
    echo "-- control.log"; tail -n 40 $CUDA_MPS_LOG_DIRECTORY/control.log
    echo "-- server.log"; tail -n 40 $CUDA_MPS_LOG_DIRECTORY/server.log
    echo quit | "$CTL"; sleep 1
fi

if [ "$WHAT" = mpsusers ] || [ "$WHAT" = all ]; then
    echo "== MPS and a second uid (classic, then -multiuser-server)"
    cmake --build "$BUILD" -j16 --target fcsp_probe >/dev/null 2>&1
    PROBE=$BUILD/fcsp_core/native/tools/fcsp-probe
    chmod -R a+rX "$BUILD" 2>/dev/null
    CTL=$(command -v nvidia-cuda-mps-control || echo /usr/local/nvidia/bin/nvidia-cuda-mps-control)
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/fcsp-mps-pipe2 CUDA_MPS_LOG_DIRECTORY=/tmp/fcsp-mps-log2
    id fcspmps >/dev/null 2>&1 || useradd -M fcspmps
    for flags in "" "-M"; do
        rm -rf $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY; mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
        chmod 755 $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
        "$CTL" -d $flags; sleep 1
        echo "-- daemon flags '$flags'"
        (sleep 8 | "$PROBE" init device hold) >/tmp/root_holder.txt 2>&1 &
        HOLDER=$!
        sleep 3
        echo "servers with root client: $(echo get_server_list | "$CTL")"
        s=$(date +%s%N)
        timeout 20 su fcspmps -s /bin/bash -c "CUDA_MPS_PIPE_DIRECTORY=$CUDA_MPS_PIPE_DIRECTORY $PROBE init device meminfo" 2>&1 | sed 's/^/  second uid: /'
        echo "  second uid rc=${PIPESTATUS[0]} after $(( ($(date +%s%N) - s) / 1000000 )) ms"
        echo "servers: $(echo get_server_list | "$CTL")"
        wait $HOLDER # (a bare `wait` would also wait for the tee of the log: forever)
        sed 's/^/  root holder: /' /tmp/root_holder.txt
        tail -n 12 $CUDA_MPS_LOG_DIRECTORY/control.log | sed 's/^/  control.log: /'
        echo quit | "$CTL"; sleep 2
    done
fi
