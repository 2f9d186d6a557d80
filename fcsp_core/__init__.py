"""fcsp: fractional GPUs that are really fenced.

Many jobs share one NVIDIA GPU; each gets a hard device-memory cap and an SM share, enforced by
libfcsp.so (preloaded into the job) and coordinated through a node-wide shared-memory region. This
package is the Python side: the paths of the installed native parts, the region manager (cffi binding
of fcsp_api.h), config models and the `fcsp` CLI.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fcsp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
