"""One tenant of bench/gpu_inference.py (PyTorch, a real GPU): a graph-captured decode tenant, a bf16
matmul trainer, or a capture-storm tenant. Prints `ready` once set up, waits for a line `go` on stdin (so
tenants start together), runs, and prints one JSON line of figures.

    python gpu_inference_worker.py decode --seconds S [--rate R] [--layers 16]
    python gpu_inference_worker.py train --seconds S
    python gpu_inference_worker.py capture [--layers 4] [--graphs 4]

decode: a Llama-shaped decoder step (hidden 4096, 32 heads of 128, MLP 11008, RMSNorm, a 1024-token KV
cache, batch 4, bf16) of `layers` layers, captured once into a CUDA graph (torch.cuda.graph) and replayed:
back to back (closed loop) or, with --rate, on a fixed schedule of R steps/s (open loop: a step's latency
counts from its scheduled time, so queueing shows). train: 8192 x 8192 bf16 matmuls. capture: capture
`graphs` graphs of the decode step right after start-up and replay each once (what a serving engine does at
start)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

H, NH, HD, FF, KV, B = 4096, 32, 128, 11008, 1024, 4


def build(layers: int) -> tuple[object, torch.Tensor]:
    dev, dt = "cuda", torch.bfloat16
    ws = []
    for _ in range(layers):
        ws.append(
            {
                "qkv": torch.empty(H, 3 * H, device=dev, dtype=dt).normal_(0, 0.02),
                "o": torch.empty(H, H, device=dev, dtype=dt).normal_(0, 0.02),
                "w13": torch.empty(H, 2 * FF, device=dev, dtype=dt).normal_(0, 0.02),
                "w2": torch.empty(FF, H, device=dev, dtype=dt).normal_(0, 0.02),
                "n1": torch.ones(H, device=dev, dtype=dt),
                "n2": torch.ones(H, device=dev, dtype=dt),
                "k": torch.empty(B, NH, KV, HD, device=dev, dtype=dt).normal_(),
                "v": torch.empty(B, NH, KV, HD, device=dev, dtype=dt).normal_(),
            }
        )
    x = torch.empty(B, H, device=dev, dtype=dt).normal_()
    out = torch.empty_like(x)

    def norm(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return h * torch.rsqrt(h.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(h.dtype) * w

    def step() -> None:
        h = x
        for w in ws:
            q = (norm(h, w["n1"]) @ w["qkv"])[:, :H].view(B, NH, 1, HD)
            a = torch.nn.functional.scaled_dot_product_attention(q, w["k"], w["v"])
            h = h + a.reshape(B, H) @ w["o"]
            g, u = (norm(h, w["n2"]) @ w["w13"]).chunk(2, dim=-1)
            h = h + (torch.nn.functional.silu(g) * u) @ w["w2"]
        out.copy_(h)

    return step, out


def capture(step) -> torch.cuda.CUDAGraph:
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def wait_go() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.startswith("go"):
        sys.exit(0)


def decode(args: argparse.Namespace) -> dict[str, object]:
    step, _ = build(args.layers)
    g = capture(step)
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    wait_go()
    lat: list[float] = []
    t0 = time.perf_counter()
    if args.rate:
        period = 1.0 / args.rate
        i = 0
        while True:
            due = t0 + i * period
            if due - t0 >= args.seconds:
                break
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            g.replay()
            torch.cuda.synchronize()
            lat.append(time.perf_counter() - due)
            i += 1
    else:
        while time.perf_counter() - t0 < args.seconds:
            t = time.perf_counter()
            g.replay()
            torch.cuda.synchronize()
            lat.append(time.perf_counter() - t)
    dt = time.perf_counter() - t0
    ms = [x * 1e3 for x in lat]
    return {
        "steps": len(ms),
        "steps_per_s": len(ms) / dt,
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms),
        "mem_total": total,
        "mem_free": free,
    }


def train(args: argparse.Namespace) -> dict[str, object]:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    wait_go()
    n = 0
    ev: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        for i in range(4):
            if i == 0:  # one matmul of each batch timed on the GPU: its spread is what a cost estimate sees
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                a @ b
                e1.record()
                ev.append((e0, e1))
            else:
                a @ b
        torch.cuda.synchronize()
        n += 4
    dt = time.perf_counter() - t0
    ms = [e0.elapsed_time(e1) for e0, e1 in ev]
    return {
        "matmuls": n,
        "matmuls_per_s": n / dt,
        "kernel_ms_p5": pct(ms, 5),
        "kernel_ms_p50": pct(ms, 50),
        "kernel_ms_p95": pct(ms, 95),
    }


def storm(args: argparse.Namespace) -> dict[str, object]:
    step, _ = build(args.layers)
    wait_go()
    ok, errors = 0, []
    for _ in range(args.graphs):
        try:
            g = capture(step)
            g.replay()
            torch.cuda.synchronize()
            ok += 1
        except RuntimeError as e:  # a failed capture is the figure being measured
            errors.append(str(e).splitlines()[0][:160])
            break  # the CUDA context may be unusable after an invalidated capture
    return {"captured": ok, "failed": args.graphs - ok, "errors": errors}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["decode", "train", "capture"])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--graphs", type=int, default=4)
    args = ap.parse_args()
    try:
        res = {"decode": decode, "train": train, "capture": storm}[args.what](args)
    except RuntimeError as e:  # reported as a figure (a tenant that died), not a traceback
        print(json.dumps({"error": str(e).splitlines()[0][:300]}), flush=True)
        return 3
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
