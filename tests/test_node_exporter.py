"""`fcsp node`'s Prometheus exporter: what it says per GPU and per tenant, with which labels; series of ended
tenants go; output parses with Prometheus' own text parser; 50 concurrent scrapers with 64 tenants and 256
processes stay under 50 ms at p99."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.probe import start_holder

from fcsp_core.region import read_snapshot

MiB = 1 << 20
GiB = 1 << 30
QUICK = bool(os.environ.get("FCSP_TEST_QUICK"))
HOST = socket.gethostname()


def _samples(text: str) -> dict[str, list]:
    """Samples by sample name, from Prometheus' parser."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _one(samples: dict[str, list], name: str, **labels: str):
    found = [s for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found} among {samples.get(name)}"
    return found[0].value


def _release(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.communicate(input="", timeout=60)


def test_metrics_per_gpu_and_tenant_with_dcgm_labels(native, sim_env, node_daemon, tmp_path):
    pytest.importorskip("pynvml")
    config = tmp_path / "node.toml"
    config.write_text("sm_time_window_seconds = 0.3\n")
    node_env = sim_env(mem="8G", preload=False)
    daemon = node_daemon(node_env, "--config", str(config))
    slurm = sim_env(mem="8G", FCSP_TENANT="slurm-4242.0", FCSP_MEM_LIMIT="2G", FCSP_SM_LIMIT="50")
    mine = sim_env(mem="8G", FCSP_TENANT="notebook", FCSP_MEM_LIMIT="1G")
    procs = [
        start_holder(native.probe, slurm, "alloc", "512M", "launch", "spin", "264", "128", "20"),
        start_holder(native.probe, slurm, "alloc", "256M"),
        start_holder(native.probe, mine, "alloc", "100M", "alloc", "2G", refused_ok=True),  # 2G: refused
        start_holder(native.probe, {**mine, "LD_PRELOAD": ""}, "alloc", "1G"),  # not under fcsp
    ]
    victim = start_holder(native.probe, mine, "alloc", "28M")
    try:
        victim.kill()
        victim.wait(timeout=30)
        daemon.wait_log(rf"reaped pid={victim.pid} ")
        deadline = time.monotonic() + 10
        while "fcsp_tenant_sm_time_ratio{" not in daemon.scrape():  # two readings of the SM-time window
            assert time.monotonic() < deadline, "no SM-time ratio"
            time.sleep(0.1)
        s = _samples(daemon.scrape())
        uuid = read_snapshot(node_env["FCSP_REGION_DIR"]).gpus[0].uuid
        gpu = {"gpu": "0", "UUID": uuid, "hostname": HOST}
        job = {**gpu, "tenant": "slurm-4242.0", "job_id": "4242", "user": "root", "scheduler": "slurm"}
        nb = {**gpu, "tenant": "notebook", "job_id": "", "user": "root", "scheduler": ""}
        if os.geteuid() != 0:
            job["user"] = nb["user"] = str(os.geteuid())
            job.pop("user"), nb.pop("user")
        assert _one(s, "fcsp_node_up", hostname=HOST) == 1
        assert _one(s, "fcsp_build_info", hostname=HOST) == 1
        assert _one(s, "fcsp_gpu_memory_total_bytes", **gpu) == 8 * GiB
        assert _one(s, "fcsp_gpu_memory_used_bytes", **gpu) == 868 * MiB
        assert _one(s, "fcsp_gpu_processes", **gpu) == 3
        assert _one(s, "fcsp_gpu_unmanaged_memory_bytes", **gpu) == GiB
        assert _one(s, "fcsp_gpu_context_memory_bytes", **gpu) == 0  # the simulator has no context memory
        assert _one(s, "fcsp_tenant_memory_used_bytes", **job) == 768 * MiB
        assert _one(s, "fcsp_tenant_memory_limit_bytes", **job) == 2 * GiB
        assert _one(s, "fcsp_tenant_memory_peak_bytes", **job) == 768 * MiB
        assert _one(s, "fcsp_tenant_sm_limit_ratio", **job) == 0.5
        assert _one(s, "fcsp_tenant_memory_used_bytes", **nb) == 100 * MiB
        assert _one(s, "fcsp_tenant_allocations_refused_total", **nb) == 1
        assert not [x for x in s.get("fcsp_tenant_sm_limit_ratio", []) if x.labels["tenant"] == "notebook"]
        tenant_only = {k: v for k, v in nb.items() if k not in ("gpu", "UUID")}
        assert _one(s, "fcsp_tenant_processes", **tenant_only) == 1
        assert _one(s, "fcsp_tenant_reaped_processes_total", **tenant_only) == 1
        assert _one(s, "fcsp_tenant_reaped_bytes_total", **tenant_only) == 28 * MiB
        assert _one(s, "fcsp_reaped_processes_total", hostname=HOST) == 1
        assert _one(s, "fcsp_gpu_reaped_processes_total", **gpu) == 1
        if "fcsp_tenant_launches_total" in s:  # compute caps: present when libfcsp has the SM limiter
            assert _one(s, "fcsp_tenant_launches_total", **job) >= 20
            assert _one(s, "fcsp_tenant_sm_time_seconds_total", **job) > 0
            assert 0 <= _one(s, "fcsp_tenant_sm_time_ratio", **job) <= 1
    finally:
        _release(procs)
    # Ended tenants' series go (the slurm tenant is environment-configured: it goes with its processes).
    deadline = time.monotonic() + 10
    while 'tenant="slurm-4242.0"' in daemon.scrape() or 'tenant="notebook"' in daemon.scrape():
        assert time.monotonic() < deadline, "series of ended tenants must disappear"
        time.sleep(0.05)


def test_unknown_paths_and_gzip(sim_env, node_daemon):
    daemon = node_daemon(sim_env(preload=False))
    url = urllib.parse.urlsplit(daemon.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/nothing")
    resp = conn.getresponse()
    assert resp.status == 404 and b"/metrics" in resp.read()
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    resp = conn.getresponse()
    import gzip

    body = gzip.decompress(resp.read()).decode()
    assert resp.status == 200 and resp.getheader("Content-Encoding") == "gzip" and "fcsp_node_up" in body
    conn.close()


# ---------------------------------------------------------------------------------------------------
# Under load


def _scraper(url: str, stop: threading.Event, latencies: list[float], bodies: list[str], errors: list[str]):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            conn.request("GET", parts.path)
            resp = conn.getresponse()
            body = resp.read()
            latencies.append(time.perf_counter() - t0)
            if resp.status != 200:
                errors.append(f"HTTP {resp.status}")
            if len(bodies) < 3 or not len(latencies) % 500:
                bodies.append(body.decode())
    except (OSError, http.client.HTTPException) as exc:
        errors.append(repr(exc))
    finally:
        conn.close()


@pytest.mark.slow
def test_fifty_scrapers_64_tenants_256_processes(native, sim_env, node_daemon):
    node_env = sim_env(mem="80G", preload=False)
    daemon = node_daemon(node_env)
    procs = []
    try:
        for i in range(256):
            tenant = i % 64
            env = sim_env(mem="80G", FCSP_TENANT=f"slurm-{1000 + tenant}.0", FCSP_MEM_LIMIT="1G")
            procs.append(
                subprocess.Popen(
                    [str(native.probe), "init", "alloc", f"{1 + i % 7}M", "hold"],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for p in procs:
            assert p.stdout is not None and "alloc ok" in p.stdout.readline() + p.stdout.readline()
        snap = read_snapshot(node_env["FCSP_REGION_DIR"])
        assert len(snap.tenants) == 64 and len(snap.processes) == 256
        duration = 10.0 if QUICK or native.sanitizer else 30.0
        stop = threading.Event()
        latencies: list[float] = []
        bodies: list[str] = []
        errors: list[str] = []
        threads = [
            threading.Thread(target=_scraper, args=(daemon.url, stop, latencies, bodies, errors))
            for _ in range(50)
        ]
        for t in threads:
            t.start()
        time.sleep(duration)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        rss = daemon.rss_bytes()
    finally:
        _release(procs)
    assert not errors, errors[:5]
    latencies.sort()
    n = len(latencies)
    p50, p99 = latencies[n // 2] * 1000, latencies[int(n * 0.99)] * 1000
    print(
        f"\n{n} scrapes by 50 scrapers in {duration:.0f} s ({n / duration:.0f}/s): p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms, max {latencies[-1] * 1000:.1f} ms; {len(bodies[0])} bytes each; "
        f"daemon RSS {rss / MiB:.1f} MiB"
    )
    for body in bodies:
        s = _samples(body)
        assert len(s["fcsp_tenant_memory_used_bytes"]) == 64
        assert sum(x.value for x in s["fcsp_tenant_processes"]) == 256
    assert p99 < 50, f"p99 scrape latency {p99:.1f} ms"
