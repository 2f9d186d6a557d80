"""fcsp for Slurm: the SPANK plugin's site-side helpers (`fcsp slurm plugstack|gres|check`).

The plugin itself is C (spank/ in the repository, installed as fcsp_core/lib/fcsp_spank.so). This package
generates the configuration lines a site needs from the node's GPUs and checks a node's setup, with
Slurm's CLI tools (pyslurm only when importable)."""

from fcsp_slurm.command import register

__all__ = ["register"]
