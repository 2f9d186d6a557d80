"""The node daemon (`fcsp node`): owns the node region, reaps dead processes, removes idle tenants, audits GPU
processes against the driver and exports Prometheus metrics. One per node.

Modules, each with one job: config (NodeConfig from TOML and flags), instance_lock (one daemon per node),
region_guard (open, check, rebuild a refused region), pidwatch (pidfds of live processes), reaper (reap passes
and their log), tenant_gc (idle tenants), labels (tenant and user labels), nvml (GPU indices, memory outside
fcsp), rates (SM-time ratio windows), exporter (the Prometheus collector), metrics_http (the HTTP endpoint),
jobmap (dcgm-exporter's job-mapping files), audit (the driver-truth audit: escapes, their action and
metrics), audit_jobs (which scheduler job a process is in, from its cgroup and ancestry), daemon (the main
loop), main (start, loop or --once, stop), command (the `fcsp node` subcommand's arguments).
"""
