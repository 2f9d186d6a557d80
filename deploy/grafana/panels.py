"""What the fcsp dashboards show: three dashboards (cluster, node, job/tenant) as plain data, one PromQL
expression per query. generate.py turns them into Grafana JSON with grafana-foundation-sdk.

Template variables: $cluster (a label the site's scrape config adds, deploy/prometheus/prometheus.yml),
$hostname, $job (fcsp's job_id label) and $user; "All" is the regex `.*`, which also matches a missing label.
Queries marked optional join dcgm-exporter's device metrics (by UUID and hostname) and are empty where
dcgm-exporter is not scraped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NODE = 'cluster=~"$cluster", hostname=~"$hostname"'
TENANT = f'{NODE}, job_id=~"$job", user=~"$user"'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    optional: bool = False  # may be empty: needs dcgm-exporter's metrics


@dataclass(frozen=True)
class Panel:
    title: str
    kind: Literal["timeseries", "stat", "table"]
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    width: int = 12
    height: int = 8


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # label_values(...)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]
    tags: tuple[str, ...] = field(default=("fcsp", "gpu"))


CLUSTER_VAR = Variable("cluster", "cluster", "label_values(fcsp_node_up, cluster)")
HOST_VAR = Variable("hostname", "node", 'label_values(fcsp_node_up{cluster=~"$cluster"}, hostname)')
JOB_VAR = Variable("job", "job", f"label_values(fcsp_tenant_processes{{{NODE}}}, job_id)")
USER_VAR = Variable("user", "user", f'label_values(fcsp_tenant_processes{{{NODE}, job_id=~"$job"}}, user)')
ALL_VARS = (CLUSTER_VAR, HOST_VAR, JOB_VAR, USER_VAR)


def stat(title: str, expr: str, unit: str = "none", description: str = "") -> Panel:
    return Panel(title, "stat", unit, (Query(expr),), description, width=4, height=4)


# Panels shared by the dashboards.
MEMORY_CAPPED_VS_USED = Panel(
    "Memory: capped vs used", "timeseries", "bytes",
    (
        Query(f"sum by (hostname) (fcsp_tenant_memory_limit_bytes{{{TENANT}}})", "{{hostname}} capped"),
        Query(f"sum by (hostname) (fcsp_tenant_memory_used_bytes{{{TENANT}}})", "{{hostname}} used"),
    ),
    "Device memory under tenants' caps, and what tenants hold (tenants without a cap count in used only).",
)  # fmt: skip
SM_CAPPED_VS_USED = Panel(
    "SM share: capped vs used (GPUs' worth)", "timeseries", "none",
    (
        Query(f"sum by (hostname) (fcsp_tenant_sm_limit_ratio{{{TENANT}}})", "{{hostname}} capped"),
        Query(f"sum by (hostname) (fcsp:tenant_sm_used:ratio_rate1m{{{TENANT}}})", "{{hostname}} used"),
    ),
    "Sum of tenants' SM caps and of the GPU time granted to their launches, in GPUs.",
)  # fmt: skip
REFUSALS = Panel(
    "Allocations refused by caps", "timeseries", "ops",
    (Query(f"sum by (hostname, tenant) (rate(fcsp_tenant_allocations_refused_total{{{TENANT}}}[{RATE}]))",
           "{{hostname}} {{tenant}}"),),
)  # fmt: skip
THROTTLING = Panel(
    "Throttling: launch wait per second", "timeseries", "percentunit",
    (Query(f"sum by (hostname, tenant) (fcsp:tenant_throttled:ratio_rate1m{{{TENANT}}})",
           "{{hostname}} {{tenant}}"),),
    "Seconds per second the tenant's launches waited for its SM share.",
)  # fmt: skip
REAPS = Panel(
    "Reaped processes", "timeseries", "ops",
    (Query(f"sum by (hostname) (rate(fcsp_reaped_processes_total{{{NODE}}}[{RATE}]))", "{{hostname}}"),),
    "Processes that died without cleaning up, whose memory and slot the daemon reclaimed.",
)  # fmt: skip
UNMANAGED = Panel(
    "Unmanaged memory per GPU", "timeseries", "bytes",
    (Query(f"fcsp_gpu_unmanaged_memory_bytes{{{NODE}}}", "{{hostname}} GPU {{gpu}}"),),
    "Device memory NVML sees held by processes not under fcsp: caps cannot account for it.",
)  # fmt: skip
DCGM_UTIL_VS_GRANTED = Panel(
    "dcgm GPU utilisation vs fcsp's granted share", "timeseries", "percentunit",
    (
        Query(f'DCGM_FI_DEV_GPU_UTIL{{{NODE}}} / 100 * on (UUID, hostname) group_left() '
              f"(sum by (UUID, hostname) (fcsp_gpu_memory_total_bytes{{{NODE}}}) > bool 0)",
              "{{hostname}} GPU {{gpu}} dcgm", optional=True),
        Query(f"sum by (hostname, gpu, UUID) (fcsp:tenant_sm_used:ratio_rate1m{{{NODE}}})",
              "{{hostname}} GPU {{gpu}} fcsp"),
    ),
    "dcgm-exporter's utilisation of each fcsp GPU (joined by UUID and hostname; empty without dcgm-exporter) "
    "beside the GPU time fcsp granted to tenants' launches.",
)  # fmt: skip
DCGM_FB_VS_ACCOUNTED = Panel(
    "dcgm framebuffer used vs fcsp-accounted", "timeseries", "bytes",
    (
        Query(f"DCGM_FI_DEV_FB_USED{{{NODE}}} * 1048576 - on (UUID, hostname) group_left() "
              f"fcsp_gpu_memory_used_bytes{{{NODE}}}", "{{hostname}} GPU {{gpu}} not accounted",
              optional=True),
    ),
    "Framebuffer memory dcgm-exporter sees used beyond what fcsp's tenants hold (contexts, unmanaged "
    "processes); empty without dcgm-exporter.",
)  # fmt: skip

CLUSTER = Dashboard(
    uid="fcsp-cluster",
    title="fcsp / Cluster",
    description="Fractional GPUs across the cluster: sharing, caps vs use, refusals, throttling, reaps.",
    variables=(CLUSTER_VAR, HOST_VAR, JOB_VAR, USER_VAR),
    rows=(
        ("Overview", (
            stat("Nodes up", f"sum(fcsp_node_up{{{NODE}}})"),
            stat("GPUs in use", f"count(fcsp:gpu_tenants:count{{{NODE}}} >= 1)"),
            stat("GPUs shared", f"count(fcsp:gpu_tenants:count{{{NODE}}} >= 2) or vector(0)",
                 description="GPUs with two tenants or more."),
            stat("Tenants", f"count(fcsp_tenant_processes{{{TENANT}}})"),
            stat("Processes", f"sum(fcsp_processes{{{NODE}}})"),
            stat("Memory capped", f"sum(fcsp_tenant_memory_limit_bytes{{{TENANT}}})", "bytes"),
        )),
        ("Caps", (MEMORY_CAPPED_VS_USED, SM_CAPPED_VS_USED, REFUSALS, THROTTLING)),
        ("Health", (REAPS, UNMANAGED,
                    Panel("Daemons", "table", "none", (Query(f"fcsp_build_info{{{NODE}}}"),),
                          "Versions of fcsp on each node.", width=24))),
        ("Device view (dcgm-exporter)", (DCGM_UTIL_VS_GRANTED, DCGM_FB_VS_ACCOUNTED)),
    ),
)  # fmt: skip

NODE_DASHBOARD = Dashboard(
    uid="fcsp-node",
    title="fcsp / Node",
    description="One node's GPUs and tenants.",
    variables=ALL_VARS,
    rows=(
        ("GPUs", (
            Panel("GPU memory", "timeseries", "bytes", (
                Query(f"fcsp_gpu_memory_total_bytes{{{NODE}}}", "GPU {{gpu}} total"),
                Query(f"fcsp_gpu_memory_used_bytes{{{NODE}}}", "GPU {{gpu}} fcsp tenants"),
                Query(f"fcsp_gpu_context_memory_bytes{{{NODE}}}", "GPU {{gpu}} contexts"),
            )),
            Panel("Tenants per GPU", "timeseries", "none",
                  (Query(f"fcsp:gpu_tenants:count{{{NODE}}}", "GPU {{gpu}}"),)),
            Panel("Processes per GPU", "timeseries", "none",
                  (Query(f"fcsp_gpu_processes{{{NODE}}}", "GPU {{gpu}}"),)),
            UNMANAGED,
        )),
        ("Tenants", (
            Panel("Memory used per tenant", "timeseries", "bytes",
                  (Query(f"fcsp_tenant_memory_used_bytes{{{TENANT}}}", "{{tenant}} GPU {{gpu}}"),)),
            Panel("SM share used per tenant", "timeseries", "percentunit",
                  (Query(f"fcsp:tenant_sm_used:ratio_rate1m{{{TENANT}}}", "{{tenant}} GPU {{gpu}}"),)),
            REFUSALS, THROTTLING, REAPS,
        )),
        ("Device view (dcgm-exporter)", (DCGM_UTIL_VS_GRANTED, DCGM_FB_VS_ACCOUNTED)),
    ),
)  # fmt: skip

JOB = Dashboard(
    uid="fcsp-job",
    title="fcsp / Job",
    description="A job's (or user's) tenants: memory and SM share against their caps, refusals, throttling.",
    variables=ALL_VARS,
    rows=(
        ("Memory", (
            Panel("Memory used vs cap", "timeseries", "bytes", (
                Query(f"fcsp_tenant_memory_used_bytes{{{TENANT}}}", "{{tenant}} GPU {{gpu}} used"),
                Query(f"fcsp_tenant_memory_limit_bytes{{{TENANT}}}", "{{tenant}} GPU {{gpu}} cap"),
                Query(f"fcsp_tenant_memory_peak_bytes{{{TENANT}}}", "{{tenant}} GPU {{gpu}} peak"),
            )),
            Panel("Memory use of cap", "timeseries", "percentunit",
                  (Query(f"fcsp:tenant_memory_cap_use:ratio{{{TENANT}}}", "{{tenant}} GPU {{gpu}}"),)),
            REFUSALS,
        )),
        ("Compute", (
            Panel("SM share used vs cap", "timeseries", "percentunit", (
                Query(f"fcsp:tenant_sm_used:ratio_rate1m{{{TENANT}}}", "{{tenant}} GPU {{gpu}} used"),
                Query(f"fcsp_tenant_sm_limit_ratio{{{TENANT}}}", "{{tenant}} GPU {{gpu}} cap"),
            )),
            THROTTLING,
            Panel("Launches", "timeseries", "ops", (
                Query(f"sum by (tenant) (rate(fcsp_tenant_launches_total{{{TENANT}}}[{RATE}]))",
                      "{{tenant}}"),
            )),
        )),
        ("Processes", (
            Panel("Processes", "timeseries", "none",
                  (Query(f"fcsp_tenant_processes{{{TENANT}}}", "{{hostname}} {{tenant}}"),)),
            Panel("Reaped processes", "timeseries", "ops", (
                Query(f"sum by (tenant) (rate(fcsp_tenant_reaped_processes_total{{{TENANT}}}[{RATE}]))",
                      "{{tenant}}"),
            )),
        )),
    ),
)  # fmt: skip

DASHBOARDS = (CLUSTER, NODE_DASHBOARD, JOB)
