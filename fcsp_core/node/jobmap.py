"""dcgm-exporter's HPC job-mapping directory (its --hpc-job-mapping-dir): one file per GPU, named by the GPU's
index, holding the ids of the Slurm jobs that use it, one per line. With it, dcgm-exporter labels its GPU
series with the job, like fcsp's own tenant series.

A Slurm job uses a GPU while one of its tenants (`slurm-<jobid>[.<step>]`) holds memory there. Files are
replaced atomically and only when their content changes; files of GPUs the region does not know are left
alone."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from fcsp_core._native import c_string
from fcsp_core.node.labels import scheduler_and_job
from fcsp_core.region_node import RawSnapshot

log = logging.getLogger("fcsp.node")


class DcgmJobMap:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: dict[str, str] = {}
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)

    def update(self, snap: RawSnapshot, gpu_name: Callable[[str, int], str]) -> None:
        """Rewrite the files whose job list changed; gpu_name(uuid, region index) is the file name (NVML
        index)."""
        jobs: dict[int, set[str]] = {int(g.index): set() for g in snap.gpus()}
        for t in snap.tenants():
            scheduler, job_id = scheduler_and_job(c_string(t.name))
            if scheduler != "slurm":
                continue
            for g in jobs:
                if int(t.gpu[g].used_bytes) > 0:
                    jobs[g].add(job_id)
        for g in snap.gpus():
            name = gpu_name(c_string(g.uuid), int(g.index))
            text = "".join(f"{j}\n" for j in sorted(jobs[int(g.index)], key=_job_order))
            if self._written.get(name) == text:
                continue
            self._write(name, text)

    def _write(self, name: str, text: str) -> None:
        path = self.directory / name
        tmp = self.directory / f".{name}.fcsp-tmp"
        try:
            tmp.write_text(text, encoding="ascii")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("dcgm job map: cannot write %s: %s", path, exc.strerror or exc)
            return
        self._written[name] = text


def _job_order(job: str) -> tuple[int, str]:
    return (int(job), job) if job.isdigit() else (1 << 62, job)
