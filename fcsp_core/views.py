"""What `fcsp status` shows: a region snapshot as text tables for people, or as a JSON document."""

from __future__ import annotations

import json

from fcsp_core.fmt import format_bytes, format_limit, format_ms, table
from fcsp_core.region import Snapshot, Tenant


def status_json(snapshot: Snapshot) -> str:
    """The snapshot as JSON; byte counts are in fields named *_bytes."""
    return json.dumps(snapshot.model_dump(mode="json"), indent=2)


def _tenant_rows(tenant: Tenant) -> list[list[str]]:
    rows = []
    for g in tenant.gpus:
        if not (g.used_bytes or g.limit_bytes or g.peak_bytes or g.refused_total or g.sm_limit_pct):
            continue
        rows.append(
            [
                str(g.gpu),
                format_bytes(g.used_bytes),
                format_limit(g.limit_bytes),
                format_bytes(g.peak_bytes),
                str(g.refused_total),
                f"{g.sm_limit_pct}%" if g.sm_limit_pct else "none",
            ]
        )
    if not rows:
        rows.append(["-", "0 B", "none", "0 B", "0", "none"])
    state = "closing" if tenant.closing else str(tenant.nprocs)
    origin = "policy" if tenant.from_policy else "env"
    first = [tenant.name, str(tenant.uid), state, origin]
    return [(first if i == 0 else [""] * len(first)) + row for i, row in enumerate(rows)]


def status_text(snapshot: Snapshot) -> str:
    """The snapshot as tables: GPUs, tenants (one row per GPU they use), processes."""
    if not snapshot.exists:
        note = f": {snapshot.note}" if snapshot.note else ""
        where = f" in {snapshot.region_dir}" if snapshot.region_dir else ""
        return (
            f"fcsp status: no region{where}{note}\n"
            "No fcsp job has run on this node with this region directory yet: no GPUs, tenants or processes."
        )
    out = [f"fcsp status: region {snapshot.region_file}", "", "GPUs"]
    if snapshot.gpus:
        rows = [
            [str(g.index), g.uuid, str(g.sm_count), format_bytes(g.total_bytes), format_bytes(g.used_bytes)]
            for g in snapshot.gpus
        ]
        out.append(table(["GPU", "UUID", "SMS", "TOTAL", "USED"], rows))
    else:
        out.append("  (none yet)")
    out += ["", "Tenants"]
    if snapshot.tenants:
        headers = ["TENANT", "UID", "PROCS", "LIMITS", "GPU", "USED", "LIMIT", "PEAK", "REFUSED", "SM"]
        out.append(table(headers, [row for t in snapshot.tenants for row in _tenant_rows(t)]))
    else:
        out.append("  (none)")
    out += ["", "Processes"]
    if snapshot.processes:
        out.append(
            table(
                ["PID", "TENANT", "STATE", "HEARTBEAT", "USED"],
                [
                    [
                        str(p.pid),
                        p.tenant,
                        p.state,
                        f"{format_ms(p.heartbeat_age_ms)} ago" if p.heartbeat_age_ms is not None else "never",
                        format_bytes(p.used_bytes),
                    ]
                    for p in snapshot.processes
                ],
            )
        )
    else:
        out.append("  (none)")
    return "\n".join(out)
