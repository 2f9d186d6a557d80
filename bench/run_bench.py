#!/usr/bin/env python3
"""The interposer's added cost: the same driver-API program with and without LD_PRELOAD=libfcsp.so.

    python bench/run_bench.py [--quick] [--assert] [--json OUT] [--real] [--lib PATH] [--sim-dir DIR]

Builds bench/alloc_bench.c with cc -O2 into a temporary directory, then for each scenario alternates runs
without fcsp (baseline) and with fcsp (LD_PRELOAD=libfcsp.so, a cap that does not bind) for several rounds and
takes the median of each statistic over the rounds:

  alloc 1 thread       cuMemAlloc_v2(64 KiB) + cuMemFree_v2 per sample
  alloc 4 x 16         4 concurrent processes of 16 threads each, one tenant (samples of all merged)
  launch 1 thread      one cuLaunchKernel of an empty kernel per sample
  refused              a cuMemAlloc_v2 above the cap, refused by fcsp (absolute time; the baseline row is the
                       driver refusing a size above the GPU's memory, for comparison)
  init                 cuInit + cuDevicePrimaryCtxRetain + cuCtxSetCurrent; also dlopen + symbol lookup and
                       the first allocation (libfcsp initialises lazily there, not in cuInit)
  process start        posix_spawn + wait of /bin/true, with and without LD_PRELOAD=libfcsp.so

By default it runs on the simulated driver (fcsp_core.paths: the installed package's libfcsp.so and sim/).
--real uses the machine's own driver (LD_LIBRARY_PATH untouched, no simulator variables); --lib names the
libfcsp.so to preload (for a tree where the fcsp package is not installed).

--assert exits 1 if a single-thread goal is missed: alloc added p50 <= 50 ns and p99 <= 250 ns, launch added
p50 <= 30 ns, init (cuInit + context) added <= 20 us. Without it the figures are only reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SOURCE = BENCH_DIR / "alloc_bench.c"
INCLUDE_DIR = REPO_DIR / "fcsp_core" / "native" / "include"

ALLOC_SIZE = 64 << 10
GOAL_ALLOC_P50_NS = 50.0
GOAL_ALLOC_P99_NS = 250.0
GOAL_LAUNCH_P50_NS = 30.0
GOAL_INIT_US = 20.0


@dataclass(frozen=True)
class Plan:
    rounds: int
    alloc_iters: int
    multi_iters: int  # per thread, in each of the 4 processes
    launch_iters: int
    refused_iters: int
    spawns: int
    init_runs: int  # measured init runs per round (after one that sets up the node and region)
    timeout_s: float


FULL = Plan(
    rounds=7,
    alloc_iters=200_000,
    multi_iters=5_000,
    launch_iters=100_000,
    refused_iters=100_000,
    spawns=200,
    init_runs=5,
    timeout_s=300.0,
)
# The real driver's calls take microseconds, not the simulator's nanoseconds: fewer iterations, same rounds.
REAL = Plan(
    rounds=5,
    alloc_iters=50_000,
    multi_iters=500,
    launch_iters=50_000,
    refused_iters=20_000,
    spawns=200,
    init_runs=3,
    timeout_s=300.0,
)
QUICK = Plan(
    rounds=3,
    alloc_iters=20_000,
    multi_iters=500,
    launch_iters=20_000,
    refused_iters=20_000,
    spawns=50,
    init_runs=2,
    timeout_s=120.0,
)


class BenchError(RuntimeError):
    """A benchmark step failed (build, a run, missing parts)."""


@dataclass
class Row:
    """One line of the table. Values in `unit`; goals are on the added (fcsp - baseline) figures."""

    scenario: str
    unit: str  # "ns" or "us"
    base_p50: float | None
    base_p99: float | None
    fcsp_p50: float | None
    fcsp_p99: float | None
    goal_p50: float | None = None
    goal_p99: float | None = None
    asserted: bool = False
    note: str = ""  # the goal column for rows without a goal
    noise_p50: float | None = None  # half the range of the per-round values (see noise())
    noise_p99: float | None = None
    rounds: list[dict[str, float]] = field(default_factory=list)

    @property
    def added_p50(self) -> float | None:
        if self.base_p50 is None or self.fcsp_p50 is None:
            return None
        return self.fcsp_p50 - self.base_p50

    @property
    def added_p99(self) -> float | None:
        if self.base_p99 is None or self.fcsp_p99 is None:
            return None
        return self.fcsp_p99 - self.base_p99

    def outcome(self) -> str:
        """none (no goal), ok, miss, or unresolved (added +- noise straddles the goal)."""
        seen: list[str] = []
        for added, goal, noise in (
            (self.added_p50, self.goal_p50, self.noise_p50),
            (self.added_p99, self.goal_p99, self.noise_p99),
        ):
            if goal is None or added is None:
                continue
            spread = noise or 0.0
            if added - spread > goal:
                seen.append("miss")  # over the goal even allowing for the noise
            elif added + spread <= goal:
                seen.append("ok")
            else:
                seen.append("unresolved")  # the noise straddles the goal
        if not seen:
            return "none"
        for worst in ("miss", "unresolved"):
            if worst in seen:
                return worst
        return "ok"

    def goal_text(self) -> str:
        parts = []
        if self.goal_p50 is not None:
            parts.append(f"+{self.goal_p50:.0f} p50")
        if self.goal_p99 is not None:
            parts.append(f"+{self.goal_p99:.0f} p99")
        return " / ".join(parts) + f" {self.unit}" if parts else (self.note or "-")

    def verdict(self) -> str:
        out = self.outcome()
        if out == "none":
            return "-"
        if out == "unresolved":
            pairs = ((self.goal_p50, self.noise_p50), (self.goal_p99, self.noise_p99))
            noise = max((n for g, n in pairs if g is not None and n is not None), default=0.0)
            return f"unresolved (noise +-{noise:.0f} {self.unit})"
        if self.asserted:
            return "ok" if out == "ok" else "MISS"
        return "ok (not asserted)" if out == "ok" else "over (not asserted)"


def noise(base: list[float], fcsp: list[float]) -> float:
    """How far a round's figure strays: half the range of the per-round values, the larger side's."""
    return max(((max(v) - min(v)) / 2 for v in (base, fcsp) if v), default=0.0)


# ----------------------------------------------------------------------------------------------------
# environment


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that would change what fcsp or the simulator does."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FCSP_") and k != "LD_PRELOAD"}


@dataclass(frozen=True)
class Setup:
    lib: Path
    sim_dir: Path | None  # None: the real driver
    program: Path
    plan: Plan
    tmp: Path


def find_parts(args: argparse.Namespace) -> tuple[Path, Path | None]:
    lib: Path | None = Path(args.lib).resolve() if args.lib else None
    sim: Path | None = Path(args.sim_dir).resolve() if args.sim_dir else None
    if lib is None or (sim is None and not args.real):
        try:
            from fcsp_core.paths import libfcsp_path, sim_dir
        except ImportError as e:
            raise BenchError(
                f"cannot import fcsp_core.paths ({e}): pip install the package, or pass --lib "
                "(and --sim-dir, or --real)"
            ) from e
        if lib is None:
            lib = libfcsp_path()
        if sim is None and not args.real:
            sim = sim_dir()
    if not lib.is_file():
        raise BenchError(f"libfcsp.so not found at {lib}")
    if sim is not None and not (sim / "libcuda.so.1").is_file():
        raise BenchError(f"the simulated driver libcuda.so.1 is not in {sim}")
    return lib, (None if args.real else sim)


@contextmanager
def private_dir(parent: Path, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))  # mode 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def node_env(setup: Setup, sim_state: Path) -> dict[str, str]:
    """The baseline environment: the simulated node (or the real driver), no fcsp."""
    env = clean_env()
    if setup.sim_dir is not None:
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = str(setup.sim_dir) + (f":{old}" if old else "")
        env["FCSP_SIM_DIR"] = str(sim_state)
        env["FCSP_SIM_KERNEL_US"] = "0"
        env["FCSP_SIM_MEM"] = "80G"
    return env


def fcsp_env(setup: Setup, base: Mapping[str, str], region: Path, limit: str) -> dict[str, str]:
    env = dict(base)
    env["LD_PRELOAD"] = str(setup.lib)
    env["FCSP_MEM_LIMIT"] = limit
    env["FCSP_REGION_DIR"] = str(region)
    env["FCSP_TENANT"] = "bench"
    return env


# ----------------------------------------------------------------------------------------------------
# running the program


def build(tmp: Path) -> Path:
    out = tmp / "alloc_bench"
    cc = os.environ.get("CC", "cc")
    cmd = [
        cc,
        "-std=c11",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Werror",
        f"-I{INCLUDE_DIR}",
        str(SOURCE),
        "-o",
        str(out),
        "-ldl",
        "-lpthread",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"cannot build {SOURCE.name}: {e}") from e
    if proc.returncode != 0:
        raise BenchError(f"building {SOURCE.name} failed:\n$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out


def describe_env(env: Mapping[str, str]) -> str:
    keys = sorted(k for k in env if k.startswith("FCSP_") or k in ("LD_PRELOAD", "LD_LIBRARY_PATH"))
    return " ".join(f"{k}={env[k]}" for k in keys)


def parse_line(out: str) -> dict[str, float]:
    for line in reversed(out.splitlines()):
        if line.startswith("mode="):
            fields: dict[str, float] = {}
            for item in line.split()[1:]:
                key, _, value = item.partition("=")
                fields[key] = float(value)
            return fields
    raise BenchError(f"no result line in the output:\n{out}")


def run_program(setup: Setup, env: Mapping[str, str], args: list[str]) -> dict[str, float]:
    cmd = [str(setup.program), *args]
    try:
        proc = subprocess.run(
            cmd, env=dict(env), capture_output=True, text=True, timeout=setup.plan.timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(
            f"timed out after {setup.plan.timeout_s:.0f} s: {' '.join(cmd)}\n  env: {describe_env(env)}"
        ) from e
    if proc.returncode != 0:
        raise BenchError(
            f"exit {proc.returncode}: {' '.join(cmd)}\n  env: {describe_env(env)}\n{proc.stdout}{proc.stderr}"
        )
    return parse_line(proc.stdout)


def percentile(sorted_vals: list[int], q: float) -> float:
    idx = int(q * (len(sorted_vals) - 1) + 0.5)
    return float(sorted_vals[min(idx, len(sorted_vals) - 1)])


def run_concurrent(setup: Setup, env: Mapping[str, str], procs: int, args: list[str]) -> dict[str, float]:
    """procs copies at once; the per-sample dumps of all are merged into one distribution."""
    with private_dir(setup.tmp, "dump-") as dump_dir:
        dumps = [dump_dir / f"p{i}.u32" for i in range(procs)]
        cmds = [[str(setup.program), *args, "--dump", str(d)] for d in dumps]
        running = [
            subprocess.Popen(c, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for c in cmds
        ]
        deadline = time.monotonic() + setup.plan.timeout_s
        failures: list[str] = []
        for cmd, p in zip(cmds, running, strict=True):
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                failures.append(f"timed out after {setup.plan.timeout_s:.0f} s: {' '.join(cmd)}")
                continue
            if p.returncode != 0:
                failures.append(f"exit {p.returncode}: {' '.join(cmd)}\n{out}{err}")
        if failures:
            raise BenchError("\n".join(failures) + f"\n  env: {describe_env(env)}")
        samples = array("I")
        for d in dumps:
            with d.open("rb") as f:
                samples.frombytes(f.read())
    vals = sorted(samples)
    if not vals:
        raise BenchError("no samples from the concurrent run")
    return {
        "n": float(len(vals)),
        "p50_ns": percentile(vals, 0.50),
        "p99_ns": percentile(vals, 0.99),
        "mean_ns": statistics.fmean(vals),
    }


# ----------------------------------------------------------------------------------------------------
# scenarios


def med(values: list[float]) -> float:
    return float(statistics.median(values))


def paired(
    setup: Setup, label: str, runner: Callable[[Mapping[str, str]], dict[str, float]], limit: str = "64G"
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Alternates baseline and fcsp runs, each on a fresh simulated node and region."""
    base: list[dict[str, float]] = []
    with_fcsp: list[dict[str, float]] = []
    for r in range(setup.plan.rounds):
        for which in ("base", "fcsp"):
            with private_dir(setup.tmp, "sim-") as sim_state, private_dir(setup.tmp, "region-") as region:
                env = node_env(setup, sim_state)
                if which == "fcsp":
                    env = fcsp_env(setup, env, region, limit)
                res = runner(env)
            (base if which == "base" else with_fcsp).append(res)
        progress(
            f"{label}: round {r + 1}/{setup.plan.rounds}: "
            f"base {brief(base[-1])} | fcsp {brief(with_fcsp[-1])}"
        )
    return base, with_fcsp


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def brief(res: Mapping[str, float]) -> str:
    shown = ("p50_ns", "p99_ns", "setup_us", "init_us", "first_alloc_us")
    parts = [f"{k}={res[k]:.1f}" if k.endswith("_us") else f"{k}={res[k]:.0f}" for k in shown if k in res]
    return " ".join(parts)


def ns_row(
    scenario: str,
    base: list[dict[str, float]],
    fc: list[dict[str, float]],
    goal_p50: float | None,
    goal_p99: float | None,
    asserted: bool,
) -> Row:
    return Row(
        scenario=scenario,
        unit="ns",
        base_p50=med([b["p50_ns"] for b in base]),
        base_p99=med([b["p99_ns"] for b in base]),
        fcsp_p50=med([f["p50_ns"] for f in fc]),
        fcsp_p99=med([f["p99_ns"] for f in fc]),
        goal_p50=goal_p50,
        goal_p99=goal_p99,
        asserted=asserted,
        noise_p50=noise([b["p50_ns"] for b in base], [f["p50_ns"] for f in fc]),
        noise_p99=noise([b["p99_ns"] for b in base], [f["p99_ns"] for f in fc]),
        rounds=[
            {**{f"base_{k}": v for k, v in b.items()}, **{f"fcsp_{k}": v for k, v in f.items()}}
            for b, f in zip(base, fc, strict=True)
        ],
    )


def bench_args(
    mode: str, iters: int, threads: int = 1, size: int = ALLOC_SIZE, warmup: int = 1000
) -> list[str]:
    return [
        *("--mode", mode, "--threads", str(threads), "--iters", str(iters)),
        *("--size", str(size), "--warmup", str(warmup)),
    ]


def scenario_alloc1(setup: Setup) -> Row:
    args = bench_args("alloc", setup.plan.alloc_iters)
    base, fc = paired(setup, "alloc 1 thread", lambda env: run_program(setup, env, args))
    return ns_row("alloc+free, 1 thread", base, fc, GOAL_ALLOC_P50_NS, GOAL_ALLOC_P99_NS, asserted=True)


def scenario_alloc_multi(setup: Setup) -> Row:
    args = bench_args("alloc", setup.plan.multi_iters, threads=16)
    base, fc = paired(setup, "alloc 4x16", lambda env: run_concurrent(setup, env, 4, args))
    return ns_row(
        "alloc+free, 4 procs x 16 thr", base, fc, GOAL_ALLOC_P50_NS, GOAL_ALLOC_P99_NS, asserted=False
    )


def scenario_launch(setup: Setup) -> Row:
    args = bench_args("launch", setup.plan.launch_iters)
    base, fc = paired(setup, "launch", lambda env: run_program(setup, env, args))
    return ns_row("launch, 1 thread", base, fc, GOAL_LAUNCH_P50_NS, None, asserted=True)


def scenario_refused(setup: Setup) -> list[Row]:
    fcsp_args = bench_args("refused", setup.plan.refused_iters, size=64 << 20)
    # The driver's own refusal, for comparison: a size above the GPU's memory, no fcsp. A real driver takes
    # milliseconds for it, so few samples.
    driver_args = bench_args("refused", min(setup.plan.refused_iters, 200), size=1 << 40, warmup=5)
    fc: list[dict[str, float]] = []
    drv: list[dict[str, float]] = []
    for r in range(setup.plan.rounds):
        with private_dir(setup.tmp, "sim-") as sim_state, private_dir(setup.tmp, "region-") as region:
            env = node_env(setup, sim_state)
            drv.append(run_program(setup, env, driver_args))
            fc.append(run_program(setup, fcsp_env(setup, env, region, "1M"), fcsp_args))
        progress(
            f"refused: round {r + 1}/{setup.plan.rounds}: fcsp {brief(fc[-1])} | driver {brief(drv[-1])}"
        )
    return [
        Row(
            scenario="refused by fcsp (cap 1M, 64M)",
            unit="ns",
            base_p50=None,
            base_p99=None,
            fcsp_p50=med([f["p50_ns"] for f in fc]),
            fcsp_p99=med([f["p99_ns"] for f in fc]),
            note="(HAMi-core: 6 us)",
            rounds=fc,
        ),
        Row(
            scenario="refused by the driver (1 TiB)",
            unit="ns",
            base_p50=med([d["p50_ns"] for d in drv]),
            base_p99=med([d["p99_ns"] for d in drv]),
            fcsp_p50=None,
            fcsp_p99=None,
            note="(reference, no fcsp)",
            rounds=drv,
        ),
    ]


def scenario_init(setup: Setup) -> list[Row]:
    """One process sets up the node and the region, then init_runs processes are timed on them (the region and
    the simulated node's state already exist, as for every job but the first on a node); a round's figure is
    the median of its runs."""
    args = ["--mode", "init", "--size", str(ALLOC_SIZE)]

    def measure(env: Mapping[str, str]) -> dict[str, float]:
        run_program(setup, env, args)
        runs = [run_program(setup, env, args) for _ in range(setup.plan.init_runs)]
        return {k: med([r[k] for r in runs]) for k in runs[0]}

    base, fc = paired(setup, "init", measure)

    def row(key: str, scenario: str, goal: float | None, asserted: bool) -> Row:
        return Row(
            scenario=scenario,
            unit="us",
            base_p50=med([b[key] for b in base]),
            base_p99=None,
            fcsp_p50=med([f[key] for f in fc]),
            fcsp_p99=None,
            goal_p50=goal,
            asserted=asserted,
            noise_p50=noise([b[key] for b in base], [f[key] for f in fc]),
            rounds=[{"base": b[key], "fcsp": f[key]} for b, f in zip(base, fc, strict=True)],
        )

    return [
        row("init_us", "init: cuInit + primary ctx", GOAL_INIT_US, True),
        row("setup_us", "init: dlopen + 14 lookups", None, False),
        row("first_alloc_us", "init: first alloc (fcsp setup)", GOAL_INIT_US, False),
    ]


def spawn_once(env: Mapping[str, str]) -> float:
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn("/bin/true", ["/bin/true"], env)
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    if os.waitstatus_to_exitcode(status) != 0:
        raise BenchError(f"/bin/true failed ({describe_env(env)})")
    return (t1 - t0) / 1e3


def scenario_spawn(setup: Setup) -> Row:
    base_env = clean_env()
    fcsp = dict(base_env)
    fcsp["LD_PRELOAD"] = str(setup.lib)
    base: list[float] = []
    fc: list[float] = []
    for _ in range(10):  # warm the page cache and the dynamic loader's caches
        spawn_once(base_env)
        spawn_once(fcsp)
    for _ in range(setup.plan.spawns):
        base.append(spawn_once(base_env))
        fc.append(spawn_once(fcsp))
    q = statistics.quantiles
    return Row(
        scenario="process start (/bin/true)",
        unit="us",
        base_p50=med(base),
        base_p99=q(base, n=100)[98],
        fcsp_p50=med(fc),
        fcsp_p99=q(fc, n=100)[98],
        rounds=[
            {
                "spawns": float(len(base)),
                "base_mean_us": statistics.fmean(base),
                "fcsp_mean_us": statistics.fmean(fc),
            }
        ],
    )


# ----------------------------------------------------------------------------------------------------
# report


def fmt(v: float | None, unit: str, signed: bool = False) -> str:
    if v is None:
        return "-"
    text = f"{v:+.1f}" if signed else f"{v:.1f}"
    if unit == "ns":
        text = f"{v:+.0f}" if signed else f"{v:.0f}"
    return f"{text} {unit}"


def print_table(rows: list[Row]) -> None:
    header = [
        "scenario",
        "base p50",
        "base p99",
        "fcsp p50",
        "fcsp p99",
        "added p50",
        "added p99",
        "goal",
        "verdict",
    ]
    table = [header]
    for r in rows:
        table.append(
            [
                r.scenario,
                fmt(r.base_p50, r.unit),
                fmt(r.base_p99, r.unit),
                fmt(r.fcsp_p50, r.unit),
                fmt(r.fcsp_p99, r.unit),
                fmt(r.added_p50, r.unit, True),
                fmt(r.added_p99, r.unit, True),
                r.goal_text(),
                r.verdict(),
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, line in enumerate(table):
        print(
            "  ".join(
                cell.ljust(widths[j]) if j == 0 or j >= 7 else cell.rjust(widths[j])
                for j, cell in enumerate(line)
            ).rstrip()
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations and rounds (a smoke test)")
    ap.add_argument(
        "--assert", dest="check", action="store_true", help="exit 1 if a single-thread goal is missed"
    )
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON to OUT")
    ap.add_argument(
        "--real",
        action="store_true",
        help="use the machine's own CUDA driver, not the simulator (LD_LIBRARY_PATH untouched)",
    )
    ap.add_argument("--lib", metavar="PATH", help="the libfcsp.so to preload (default: fcsp_core.paths)")
    ap.add_argument(
        "--sim-dir",
        metavar="DIR",
        help="the simulated driver's directory (default: fcsp_core.paths.sim_dir())",
    )
    ap.add_argument(
        "--only", metavar="LIST", help="comma-separated subset of: alloc1,alloc4x16,launch,refused,init,spawn"
    )
    args = ap.parse_args(argv)

    plan = QUICK if args.quick else REAL if args.real else FULL
    wanted = {"alloc1", "alloc4x16", "launch", "refused", "init", "spawn"}
    if args.only:
        chosen = {s.strip() for s in args.only.split(",") if s.strip()}
        if not chosen <= wanted:
            ap.error(f"--only: unknown scenario(s) {', '.join(sorted(chosen - wanted))}")
        wanted = chosen
    try:
        lib, sim = find_parts(args)
    except (BenchError, FileNotFoundError) as e:
        print(f"run_bench: {e}", file=sys.stderr)
        return 2

    ncpu = os.cpu_count() or 1
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fcsp-bench-") as tmpname:
        tmp = Path(tmpname)
        try:
            program = build(tmp)
            setup = Setup(lib=lib, sim_dir=sim, program=program, plan=plan, tmp=tmp)
            print(
                f"fcsp bench: driver {'REAL (machine driver)' if sim is None else f'simulated ({sim})'}; "
                f"libfcsp {lib}; {ncpu} CPUs; {plan.rounds} rounds{' (quick)' if args.quick else ''}",
                file=sys.stderr,
                flush=True,
            )
            t_scn = time.monotonic()

            def done(name: str) -> None:
                nonlocal t_scn
                progress(f"{name}: {time.monotonic() - t_scn:.0f} s")
                t_scn = time.monotonic()

            if "alloc1" in wanted:
                rows.append(scenario_alloc1(setup))
                done("alloc1")
            if "alloc4x16" in wanted:
                rows.append(scenario_alloc_multi(setup))
                done("alloc4x16")
            if "launch" in wanted:
                rows.append(scenario_launch(setup))
                done("launch")
            if "refused" in wanted:
                rows.extend(scenario_refused(setup))
                done("refused")
            if "init" in wanted:
                rows.extend(scenario_init(setup))
                done("init")
            if "spawn" in wanted:
                rows.append(scenario_spawn(setup))
                done("spawn")
        except BenchError as e:
            print(f"run_bench: {e}", file=sys.stderr)
            return 2

    elapsed = time.monotonic() - started
    print()
    print(
        f"fcsp interposer overhead ({'real driver' if sim is None else 'simulated driver'}, "
        f"{platform.machine()}, {ncpu} CPUs, median of {plan.rounds} alternating rounds"
        f"{', quick' if args.quick else ''}; {elapsed:.0f} s)"
    )
    print()
    print_table(rows)
    print()
    print("Notes:")
    print(
        "  - added = fcsp - baseline (medians over rounds); per-call figures include one clock_gettime pair."
    )
    print(
        f"  - alloc+free is one cuMemAlloc_v2({ALLOC_SIZE >> 10} KiB) + cuMemFree_v2; launch is 1 block x 32 "
        "threads of an empty kernel."
    )
    print(
        f"  - 4 procs x 16 threads = 64 threads on {ncpu} CPUs"
        + (": oversubscribed, so its p99 reflects scheduling, not fcsp." if ncpu < 64 else ".")
    )
    print(
        "  - goals are asserted (--assert) only for the single-thread alloc and launch figures and for "
        "cuInit. A goal is 'unresolved' where added +- noise (half the range of the per-round figures, "
        "baseline or fcsp, whichever is larger) straddles it: the measurement cannot tell, so it neither "
        "passes nor fails; 'ok' and 'MISS' hold even allowing for that noise."
    )
    print(
        "  - libfcsp does nothing in cuInit: it sets itself up (region, process slot, heartbeat thread) on "
        "the first allocation or memory query, so 'first alloc' is where its initialisation cost shows."
    )
    if sim is not None:
        print(
            "  - simulated driver: the baseline is far cheaper than a real driver's, so relative figures do "
            "not carry over; the added ns do."
        )

    missed = [r for r in rows if r.asserted and r.outcome() == "miss"]
    unresolved = [r for r in rows if r.asserted and r.outcome() == "unresolved"]
    if args.json:
        doc = {
            "driver": "real" if sim is None else "sim",
            "lib": str(lib),
            "cpus": ncpu,
            "machine": platform.machine(),
            "plan": asdict(plan),
            "rows": [
                {**asdict(r), "added_p50": r.added_p50, "added_p99": r.added_p99, "verdict": r.verdict()}
                for r in rows
            ],
            "goals_missed": [r.scenario for r in missed],
            "goals_unresolved": [r.scenario for r in unresolved],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
    if unresolved:
        print(
            "\nGoals not resolvable here (added +- noise straddles the goal): "
            + ", ".join(r.scenario for r in unresolved)
        )
    if missed:
        print(f"\nGoals missed: {', '.join(r.scenario for r in missed)}")
        if args.check:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
