"""The Prometheus collector: every collect() reads one region snapshot and turns it into metric families (no
state mirrored in the background; the SM-time ratio, which needs two readings, comes from rates.py).

Naming follows Prometheus' naming guide: `fcsp_` prefix, base units, `_total` counters, ratios 0..1.
GPU series carry dcgm-exporter's `gpu`, `UUID` and `hostname` labels (so dashboards can join the two),
tenant series add `tenant`, `job_id`, `user` and `scheduler` (labels.py). A tenant's series exist while the
tenant does.

Adding a per-tenant-per-GPU metric is one line in TENANT_GPU_METRICS, naming a field of struct
fcsp_tenant_gpu_info: it is exported when this libfcsp's header has that field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from fcsp_core._native import c_string
from fcsp_core.node.labels import LabelCache
from fcsp_core.node.nvml import NvmlView
from fcsp_core.node.rates import SmTimeRates
from fcsp_core.region_node import PROC_LIVE, TENANT_CLOSING, RawSnapshot, snapshot_struct_fields

GPU_LABELS = ["gpu", "UUID", "hostname"]
TENANT_LABELS = ["hostname", "tenant", "job_id", "user", "scheduler"]
TENANT_GPU_LABELS = ["gpu", "UUID", "hostname", "tenant", "job_id", "user", "scheduler"]


@dataclass(frozen=True)
class FieldMetric:
    """A metric read from one field of a snapshot record: value = field * scale; `omit_zero` leaves the series
    out when the field is 0 (for caps, where 0 means none)."""

    name: str
    kind: Literal["gauge", "counter"]
    doc: str
    field: str
    scale: float = 1.0
    omit_zero: bool = False


# Per tenant and GPU (struct fcsp_tenant_gpu_info).
TENANT_GPU_METRICS = (
    FieldMetric(
        "fcsp_tenant_memory_used_bytes", "gauge", "Device memory the tenant holds on the GPU", "used_bytes"
    ),
    FieldMetric(
        "fcsp_tenant_memory_limit_bytes", "gauge", "The tenant's memory cap on the GPU (absent: none)",
        "limit_bytes", omit_zero=True,
    ),
    FieldMetric(
        "fcsp_tenant_memory_peak_bytes", "gauge", "Most device memory the tenant held at once", "peak_bytes"
    ),
    FieldMetric(
        "fcsp_tenant_allocations_refused_total", "counter", "Allocations refused by the tenant's memory cap",
        "refused_total",
    ),
    FieldMetric(
        "fcsp_tenant_sm_limit_ratio", "gauge", "The tenant's SM share of the GPU, 0..1 (absent: none)",
        "sm_limit_pct", scale=0.01, omit_zero=True,
    ),
    # Compute caps (the SM limiter): exported when libfcsp has these fields.
    FieldMetric(
        "fcsp_tenant_sm_time_seconds_total", "counter",
        "GPU time granted to the tenant's kernel launches (rate() of it: the share of the GPU used)",
        "sm_granted_ns_total", scale=1e-9,
    ),
    FieldMetric(
        "fcsp_tenant_throttled_seconds_total", "counter", "Time the tenant's launches waited for SM share",
        "sm_throttled_ns_total", scale=1e-9,
    ),
    FieldMetric(
        "fcsp_tenant_launches_total", "counter", "Kernel and graph launches of the tenant", "launches_total"
    ),
)  # fmt: skip

# Per tenant (struct fcsp_tenant_info).
TENANT_METRICS = (
    FieldMetric("fcsp_tenant_processes", "gauge", "Processes attached to the tenant", "nprocs"),
    FieldMetric(
        "fcsp_tenant_reaped_processes_total", "counter",
        "The tenant's processes that died without cleaning up and were reaped", "reaped_total",
    ),
    FieldMetric(
        "fcsp_tenant_reaped_bytes_total", "counter", "Device memory given back by reaping its processes",
        "reaped_bytes_total",
    ),
)  # fmt: skip

# Per GPU (struct fcsp_gpu_info).
GPU_METRICS = (
    FieldMetric("fcsp_gpu_memory_total_bytes", "gauge", "The GPU's physical memory", "total_bytes"),
    FieldMetric(
        "fcsp_gpu_memory_used_bytes", "gauge", "Device memory fcsp tenants hold on the GPU", "used_bytes"
    ),
    FieldMetric("fcsp_gpu_processes", "gauge", "fcsp processes holding memory on the GPU", "nprocs"),
    FieldMetric(
        "fcsp_gpu_reaped_processes_total",
        "counter",
        "Reaped processes that held memory on the GPU",
        "reaped_total",
    ),
)


def _available(specs: Iterable[FieldMetric], struct: str) -> tuple[FieldMetric, ...]:
    fields = snapshot_struct_fields(struct)
    return tuple(s for s in specs if s.field in fields)


def _family(spec: FieldMetric, labels: list[str]) -> GaugeMetricFamily | CounterMetricFamily:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.doc, labels=labels)
    return GaugeMetricFamily(spec.name, spec.doc, labels=labels)


@dataclass(frozen=True)
class _Scrape:
    ok: bool  # a trusted region was read
    live_pids: frozenset[int]
    # region GPU index -> NVML's (bytes of processes outside fcsp, bytes of fcsp's processes); absent: unknown
    nvml: dict[int, tuple[int, int]]
    key: bytes  # equal keys, equal output


class _Families(Collector):
    """Families already built, for generate_latest."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class ExtraFamilies(Protocol):
    """More families for each scrape (the MPS manager's): key() changes whenever families() would."""

    def key(self) -> bytes: ...
    def families(self, hostname: str) -> list[Metric]: ...


@dataclass(frozen=True)
class BuildInfo:
    version: str  # the fcsp package
    libfcsp: str
    region_layout: int


class FcspCollector(Collector):
    """Metric families from one snapshot per collect().

    snapshot_into(raw) fills raw from the node region and returns True, or returns False while there is no
    trusted region (then only fcsp_build_info and fcsp_node_up 0 are exported)."""

    def __init__(
        self,
        snapshot_into: Callable[[RawSnapshot], bool],
        hostname: str,
        build: BuildInfo,
        labels: LabelCache | None = None,
        nvml: NvmlView | None = None,
        rates: SmTimeRates | None = None,
        extra: Sequence[ExtraFamilies] = (),
    ) -> None:
        self._extra = extra
        self._snapshot_into = snapshot_into
        self._hostname = hostname
        self._build = build
        self._labels = labels or LabelCache()
        self._nvml = nvml
        self._rates = rates
        self._raw = RawSnapshot()
        self._lock = threading.Lock()  # one collect at a time: they share the snapshot buffer
        self._memo_key: bytes | None = None
        self._memo_body = b""
        self._tenant_gpu_specs = _available(TENANT_GPU_METRICS, "struct fcsp_tenant_gpu_info")
        self._tenant_specs = _available(TENANT_METRICS, "struct fcsp_tenant_info")
        self._gpu_specs = _available(GPU_METRICS, "struct fcsp_gpu_info")

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names are known only per scrape (fields this libfcsp has)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            return iter(self._families(self._read()))

    def render(self) -> bytes:
        """The text exposition of one fresh snapshot, as generate_latest would write it; rendered anew only
        when something it shows changed since the last rendering (rendering costs milliseconds, and scrapes of
        an unchanged node are the common case)."""
        with self._lock:
            scrape = self._read()
            if scrape.key != self._memo_key:
                registry = CollectorRegistry(auto_describe=False)
                registry.register(_Families(self._families(scrape)))
                self._memo_body, self._memo_key = generate_latest(registry), scrape.key
            return self._memo_body

    def _read(self) -> _Scrape:
        """Take the snapshot and what else a scrape shows (NVML's view, the SM-time windows)."""
        extra_key = b"|".join(x.key() for x in self._extra)
        if not self._snapshot_into(self._raw):
            return _Scrape(ok=False, live_pids=frozenset(), nvml={}, key=b"down" + extra_key)
        snap = self._raw
        live_pids = frozenset(int(p.pid) for p in snap.procs() if int(p.state) == PROC_LIVE)
        nvml: dict[int, tuple[int, int]] = {}
        if self._nvml is not None:
            for g in snap.gpus():
                split = self._nvml.memory_split(c_string(g.uuid), live_pids)
                if split is not None:
                    nvml[int(g.index)] = split
        rates = self._rates.version if self._rates is not None else 0
        key = snap.digest() + repr((len(live_pids), sorted(nvml.items()), rates)).encode() + extra_key
        return _Scrape(ok=True, live_pids=live_pids, nvml=nvml, key=key)

    def _families(self, scrape: _Scrape) -> list[Metric]:
        host = self._hostname
        info = InfoMetricFamily("fcsp_build", "fcsp's versions on this node", labels=["hostname"])
        info.add_metric(
            [host],
            {
                "version": self._build.version,
                "libfcsp": self._build.libfcsp,
                "region_layout": str(self._build.region_layout),
            },
        )
        up = GaugeMetricFamily(
            "fcsp_node_up", "1 while the daemon has a trusted node region", labels=["hostname"]
        )
        extra = [f for x in self._extra for f in x.families(host)]
        if not scrape.ok:
            up.add_metric([host], 0)
            return [info, up, *extra]
        up.add_metric([host], 1)
        snap = self._raw
        out: list[Metric] = [info, up, *extra]
        reaped = CounterMetricFamily(
            "fcsp_reaped_processes_total", "Processes that died without cleaning up and were reaped",
            labels=["hostname"],
        )  # fmt: skip
        reaped.add_metric([host], snap.reaped_total)
        out.append(reaped)
        procs = GaugeMetricFamily(
            "fcsp_processes", "Processes attached to fcsp on this node", labels=["hostname"]
        )
        procs.add_metric([host], len(scrape.live_pids))
        out.append(procs)

        gpu_labels = self._gpu_label_values(snap)
        out += self._gpu_families(snap, gpu_labels, scrape.nvml)
        out += self._tenant_families(snap, gpu_labels)
        return out

    def _gpu_label_values(self, snap: RawSnapshot) -> dict[int, list[str]]:
        """Region GPU index -> [gpu, UUID, hostname]: gpu is NVML's index when NVML knows the GPU."""
        values = {}
        for g in snap.gpus():
            uuid = c_string(g.uuid)
            nvml_index = self._nvml.index(uuid) if self._nvml else None
            gpu = str(nvml_index if nvml_index is not None else int(g.index))
            values[int(g.index)] = [gpu, uuid, self._hostname]
        return values

    def _gpu_families(
        self, snap: RawSnapshot, gpu_labels: dict[int, list[str]], nvml: dict[int, tuple[int, int]]
    ) -> list[Metric]:
        families = [_family(spec, GPU_LABELS) for spec in self._gpu_specs]
        unmanaged = GaugeMetricFamily(
            "fcsp_gpu_unmanaged_memory_bytes",
            "Device memory NVML sees held by processes not under fcsp",
            labels=GPU_LABELS,
        )
        context = GaugeMetricFamily(
            "fcsp_gpu_context_memory_bytes",
            "Device memory NVML sees held by fcsp's processes beyond what their tenants account "
            "(driver contexts, not charged to tenants)",
            labels=GPU_LABELS,
        )
        for g in snap.gpus():
            labels = gpu_labels[int(g.index)]
            for spec, family in zip(self._gpu_specs, families, strict=True):
                family.add_metric(labels, getattr(g, spec.field) * spec.scale)
            split = nvml.get(int(g.index))
            if split is not None:
                unmanaged.add_metric(labels, split[0])
                context.add_metric(labels, max(0, split[1] - int(g.used_bytes)))
        return [*families, unmanaged, context] if unmanaged.samples else list(families)

    def _tenant_families(self, snap: RawSnapshot, gpu_labels: dict[int, list[str]]) -> list[Metric]:
        tg_specs = self._tenant_gpu_specs
        tg_families = [_family(spec, TENANT_GPU_LABELS) for spec in tg_specs]
        t_families = [_family(spec, TENANT_LABELS) for spec in self._tenant_specs]
        ratio = GaugeMetricFamily(
            "fcsp_tenant_sm_time_ratio",
            "Share of the GPU's time granted to the tenant's launches over the last window, 0..1",
            labels=TENANT_GPU_LABELS,
        )
        rates = self._rates if self._rates is not None and self._rates.available else None
        host = self._hostname
        for t in snap.tenants():
            name = c_string(t.name)
            lab = self._labels.tenant(name, int(t.uid))
            tenant_values = [host, lab.tenant, lab.job_id, lab.user, lab.scheduler]
            for spec, family in zip(self._tenant_specs, t_families, strict=True):
                value = getattr(t, spec.field)
                if spec.field == "nprocs" and value == TENANT_CLOSING:
                    value = 0
                family.add_metric(tenant_values, value * spec.scale)
            for region_index, gpu_values in gpu_labels.items():
                u = t.gpu[region_index]
                values = [getattr(u, spec.field) for spec in tg_specs]
                if not any(values):
                    continue  # a GPU the tenant never touched
                series = gpu_values + tenant_values[1:]
                for spec, family, value in zip(tg_specs, tg_families, values, strict=True):
                    if value or not spec.omit_zero:
                        family.add_metric(series, value * spec.scale)
                if rates is not None:
                    r = rates.ratio((int(t.index), int(t.created_ns), region_index))
                    if r is not None:
                        ratio.add_metric(series, r)
        out: list[Metric] = [*tg_families, *t_families]
        if rates is not None:
            out.append(ratio)
        return out
