"""deploy/grafana and deploy/prometheus against a real Prometheus: two `fcsp node` daemons on two simulated
nodes with live tenants (capped memory and SM share, a refused allocation, a reaped process, memory outside
fcsp), scraped every second with the committed rules evaluated every second. Every dashboard query, template
variable and rule must parse and (but for alerts and dcgm-joined queries) return data; promtool accepts the
config and rules; the committed dashboard JSON is what the generator writes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
DASHBOARD_FILES = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
# Template variables as "All" selects them; $__rate_interval as Grafana makes it for a 15 s scrape interval.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$cluster": ".*", "$hostname": ".*", "$job": ".*", "$user": ".*"}


def _conftest() -> ModuleType:
    """tests/conftest.py as pytest loaded it (--import-mode=importlib: it is not importable by name)."""
    path = str(Path(__file__).with_name("conftest.py"))
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == path:
            return module
    raise AssertionError("tests/conftest.py is not loaded")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prometheus() -> tuple[str, str]:
    """prometheus and promtool (Debian: apt-get install prometheus; .ci/run does), or skip with the reason."""
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if not prom or not tool:
        pytest.skip("prometheus/promtool are not on PATH: apt-get install prometheus (as .ci/run does)")
    return prom, tool


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, wait, then kill: by this process's own PID only."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _can_unshare_uts() -> bool:
    if not shutil.which("unshare"):
        return False
    done = subprocess.run(["unshare", "--uts", "hostname", "fcsp-uts-check"], capture_output=True, timeout=10)
    return done.returncode == 0


@dataclass
class Cluster:
    prom_url: str
    promtool: str
    config: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def api(self, path: str, **params: str | list[str]) -> dict:
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.prom_url}/api/v1/{path}?{query}", timeout=10) as resp:
            body: dict = json.load(resp)
        return body

    def query(self, expr: str) -> dict:
        try:
            return self.api("query", query=expr)
        except urllib.error.HTTPError as exc:  # 400: the expression does not parse
            return {"status": "error", "error": exc.read().decode(errors="replace")}


def _start(cmd: list[str], env: dict[str, str], log: Path, procs: list) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc


def _wait_log(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, log.read_text(errors="replace"), re.M)
        if m:
            return m
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} in {log} (exit {proc.poll()}):\n{log.read_text()}")
        time.sleep(0.05)


def _start_node(native: Any, base: Path, name: str, job_id: int, procs: list, uts: bool) -> str:
    """A daemon (hostname `name` where a UTS namespace can be had) and its tenants; returns host:port."""
    make_sim_env = _conftest().make_sim_env
    port = _free_port()
    node_env = make_sim_env(native, base, mem="8G", preload=False)
    cmd = [_conftest().fcsp_command(), "node", "--metrics-port", str(port), "--metrics-address", "127.0.0.1"]
    if uts:  # unshare and sh exec: the PID we hold is the daemon's
        cmd = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name, *cmd]
    daemon_log = base / "node.log"
    daemon = _start(cmd, node_env, daemon_log, procs)
    _wait_log(daemon_log, r"serving metrics on", daemon)

    probe = str(native.probe)
    capped = make_sim_env(
        native, base, mem="8G", FCSP_TENANT=f"slurm-{job_id}.0", FCSP_MEM_LIMIT="2G", FCSP_SM_LIMIT="30"
    )
    pinned = make_sim_env(
        native, base, mem="8G", FCSP_TENANT=f"ray-{name}", FCSP_MEM_LIMIT="1G", FCSP_SM_LIMIT="50"
    )
    tenants = [
        # 1G held, 4G refused by the cap, then kernels under a 30% SM cap (throttled)
        (
            capped,
            ["init", "alloc", "1G", "alloc", "4G", "launchloop", "spin", "264", "128", "300", "hold"],
            3,
        ),
        (pinned, ["init", "alloc", "1000M", "launchloop", "spin", "264", "128", "300", "hold"], 2),
        (node_env, ["init", "alloc", "1G", "hold"], 2),  # not under fcsp: unmanaged memory
    ]
    for i, (env, args, lines) in enumerate(tenants):
        log = base / f"tenant-{i}.log"
        p = _start([probe, *args], env, log, procs)
        _wait_log(log, rf"(?:^(?:init|alloc) .*\n){{{lines}}}", p)
    victim_log = base / "victim.log"
    victim = _start([probe, "init", "alloc", "16M", "hold"], pinned, victim_log, procs)
    _wait_log(victim_log, r"^alloc ok", victim)
    victim.kill()
    victim.wait(timeout=10)
    _wait_log(daemon_log, rf"reaped pid={victim.pid} ", daemon)
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def cluster(native: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    prometheus, promtool = _prometheus()
    tmp = tmp_path_factory.mktemp("dashboards")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        uts = _can_unshare_uts()
        targets = [
            _start_node(native, tmp / name, name, job_id, procs, uts)
            for name, job_id in (("node-a", 4242), ("node-b", 4343))
        ]
        config = tmp / "prometheus.yml"
        config.write_text(
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(f) for f in RULE_FILES],
                "scrape_configs": [{
                    "job_name": "fcsp-node",
                    "honor_labels": True,
                    "static_configs": [{"targets": targets, "labels": {"cluster": "test"}}],
                }],
            })
        )  # fmt: skip
        port = _free_port()
        prom_log = tmp / "prometheus.log"
        prom = _start(
            [
                prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
            ],
            dict(os.environ), prom_log, procs,
        )  # fmt: skip
        c = Cluster(f"http://127.0.0.1:{port}", promtool, config, procs)
        _wait_ready(c, prom, prom_log)
        yield c
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _wait_ready(c: Cluster, prom: subprocess.Popen[bytes], log: Path, timeout: float = 45) -> None:
    """Until both targets are up and the rate-based recording rules have samples."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        assert prom.poll() is None, f"prometheus exited {prom.returncode}:\n{log.read_text()}"
        try:
            up = c.query('up{job="fcsp-node"} == 1')["data"]["result"]
            sm = c.query("fcsp:tenant_sm_used:ratio_rate1m > 0")["data"]["result"]
            th = c.query("fcsp:tenant_throttled:ratio_rate1m")["data"]["result"]
            last = f"up={len(up)} sm_used={len(sm)} throttled={len(th)}"
            if len(up) == 2 and sm and th:
                return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise AssertionError(f"prometheus not ready in {timeout} s ({last}):\n{log.read_text()}")


def _substitute(expr: str) -> str:
    for var in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(var, SUBSTITUTIONS[var])
    return expr


def _dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every target of every panel of every committed dashboard."""
    out = []
    for path in DASHBOARD_FILES:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets") or []:
                out.append((path.name, panel["title"], target["expr"]))
    return out


def _optional_exprs() -> set[str]:
    spec = importlib.util.spec_from_file_location("fcsp_panels", DEPLOY / "grafana" / "panels.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return {
        q.expr for d in module.DASHBOARDS for _, row in d.rows for p in row for q in p.queries if q.optional
    }


@pytest.mark.slow
def test_promtool_accepts_config_and_rules(cluster: Cluster) -> None:
    for args in (
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        ["check", "config", str(cluster.config)],
        ["check", "rules", *map(str, RULE_FILES)],
    ):
        done = subprocess.run([cluster.promtool, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


@pytest.mark.slow
def test_every_dashboard_query_returns_data(cluster: Cluster) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 30, queries
    optional = _optional_exprs()
    assert optional, "the dcgm-joined queries must be marked optional in deploy/grafana/panels.py"
    assert optional <= {expr for _, _, expr in queries}, "optional queries not in the committed JSON"
    failures: list[str] = []
    deadline = time.monotonic() + 20  # rates over 1m windows fill within seconds at a 1 s scrape interval
    while True:
        failures = []
        for board, title, expr in queries:
            body = cluster.query(_substitute(expr))
            if body["status"] != "success":
                failures.append(f"{board} / {title}: {expr}: {body.get('error')}")
            elif not body["data"]["result"] and expr not in optional:
                failures.append(f"{board} / {title}: no data: {expr}")
        if not failures or time.monotonic() > deadline or any("no data" not in f for f in failures):
            break
        time.sleep(1)
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_every_template_variable_has_values(cluster: Cluster) -> None:
    seen = 0
    for path in DASHBOARD_FILES:
        for var in json.loads(path.read_text())["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
            assert m, f"{path.name} ${var['name']}: {var['query']}"
            body = cluster.api(f"label/{m.group(2)}/values", **{"match[]": _substitute(m.group(1))})
            values = [v for v in body["data"] if v]
            where = f"{path.name} ${var['name']}: {var['query']}"
            assert body["status"] == "success" and values, f"{where}: {body}"
            seen += 1
    assert seen >= 12


@pytest.mark.slow
def test_every_rule_evaluates(cluster: Cluster) -> None:
    groups = [g for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"]]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules if "alert" in r} >= {
        "FcspNodeDaemonDown", "FcspTenantPinnedAtMemoryCap", "FcspTenantPinnedAtSmCap",
        "FcspAllocationRefusalsRising", "FcspReapsRising", "FcspUnmanagedGpuMemory",
    }  # fmt: skip
    failures = []
    for rule in rules:
        body = cluster.query(rule["expr"])
        name = rule.get("record") or rule.get("alert")
        if body["status"] != "success":
            failures.append(f"{name}: {body.get('error')}")
        elif "record" in rule:
            if not body["data"]["result"]:
                failures.append(f"{name}: no data from {rule['expr']}")
            elif not cluster.query(rule["record"])["data"]["result"]:
                failures.append(f"{name}: recorded no samples")
    # Prometheus' own evaluation of the loaded rules: every one healthy.
    for group in cluster.api("rules")["data"]["groups"]:
        for rule in group["rules"]:
            if rule["health"] != "ok":
                failures.append(f"{rule['name']}: health {rule['health']}: {rule.get('lastError')}")
    assert not failures, "\n".join(failures)


def test_generated_dashboards_equal_committed() -> None:
    pytest.importorskip("grafana_foundation_sdk", reason="grafana-foundation-sdk (test extra, Python 3.11+)")
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana" / "generate.py"), "--check"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
