"""dcgm-exporter's HPC job-mapping directory (its --hpc-job-mapping-dir): one file per GPU, named by the GPU's
index, holding the ids of the Slurm jobs that use it, one per line. With it, dcgm-exporter labels its GPU
series with the job, like fcsp's own tenant series.

A Slurm job uses a GPU while one of its tenants (`slurm-<jobid>[.<step>]`) holds memory there. Files are
replaced atomically and only when their content changes; files of GPUs the region does not know are left
alone.

The daemon runs as root and the directory may be one others can write (a site's choice): nothing here follows
a symlink or opens an existing file. The directory is reached component by component with O_NOFOLLOW (a
symlink anywhere on the path is refused), each file is written to a new temporary file created with
O_CREAT|O_EXCL|O_NOFOLLOW under a random name, then renamed over the GPU's file (rename replaces a planted
symlink itself, never its target)."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from fcsp_core._native import c_string
from fcsp_core.node.labels import scheduler_and_job
from fcsp_core.region_node import RawSnapshot

log = logging.getLogger("fcsp.node")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir_nofollow(path: Path, create: bool) -> int:
    """A descriptor of directory path reached without following any symlink (missing components created 0755
    with create); OSError otherwise (ELOOP/ENOTDIR for a symlink on the way)."""
    if not path.is_absolute():
        path = Path.cwd() / path
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in path.parts[1:]:
            if part in ("", "."):
                continue
            if part == "..":
                raise OSError(22, f"'..' in {path}")
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened below, without following it
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


class DcgmJobMap:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._written: dict[str, str] = {}
        try:
            fd = open_dir_nofollow(directory, create=True)
        except OSError as exc:
            raise OSError(
                f"dcgm job map {directory}: {exc.strerror or exc} (a symlink on the path is refused)"
            ) from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning(
                "dcgm job map: %s is writable by others: its files are written without following symlinks, "
                "but anyone may change what dcgm-exporter reads there", directory,
            )  # fmt: skip

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
        try:
            dir_fd = open_dir_nofollow(self.directory, create=False)
        except OSError as exc:
            log.warning("dcgm job map: cannot open %s: %s", self.directory, exc.strerror or exc)
            return
        tmp = f".{name}.fcsp-{secrets.token_hex(8)}"
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd
            )
            try:
                os.fchmod(fd, 0o644)  # whatever the umask
                os.write(fd, text.encode("ascii"))
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            log.warning("dcgm job map: cannot write %s: %s", path, exc.strerror or exc)
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass  # never created, or already renamed
            return
        finally:
            os.close(dir_fd)
        self._written[name] = text


def _job_order(job: str) -> tuple[int, str]:
    return (int(job), job) if job.isdigit() else (1 << 62, job)
