"""Formatting for people: sizes in GiB/MiB, durations, plain text tables."""

from __future__ import annotations

from collections.abc import Sequence

_UNITS = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]


def format_bytes(nbytes: int) -> str:
    """'80 GiB', '1.5 GiB', '768 MiB', '512 B': at most two decimals, trailing zeros dropped."""
    for scale, unit in _UNITS:
        if abs(nbytes) >= scale:
            value = f"{nbytes / scale:.2f}".rstrip("0").rstrip(".")
            return f"{value} {unit}"
    return f"{nbytes} B"


def format_limit(limit_bytes: int) -> str:
    """A cap where 0 means none."""
    return format_bytes(limit_bytes) if limit_bytes else "none"


def format_ms(ms: int) -> str:
    """A duration in ms: '120 ms', '3.4 s', '5 min'."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000} min"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """A left-aligned text table, columns two spaces apart."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [headers, *rows]
    return "\n".join(
        indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines
    )
