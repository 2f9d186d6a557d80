"""The node daemon (`fcsp node`): owns the node region, reaps dead processes, removes idle tenants and exports
Prometheus metrics. One per node.

Modules, each with one job: config (NodeConfig from TOML and flags), instance_lock (one daemon per node),
region_guard (open, check, rebuild a refused region), pidwatch (pidfds of live processes), reaper (reap passes
and their log), tenant_gc (idle tenants), labels (tenant and user labels), nvml (GPU indices, memory outside
fcsp), rates (SM-time ratio windows), exporter (the Prometheus collector), metrics_http (the HTTP endpoint),
jobmap (dcgm-exporter's job-mapping files), daemon (the main loop), main (start, loop or --once, stop),
command (the `fcsp node` subcommand's arguments).
"""
