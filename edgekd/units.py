"""Parse and print byte sizes and durations as users write them in profiles and on the command line.

Convention (documented in README): ``KB``/``MB``/``GB`` are decimal (1000-based), ``KiB``/``MiB``/``GiB``
are binary (1024-based). Datasheets that say "256 KB SRAM" mean 256 KiB, so profiles write ``256 KiB``.
"""

from __future__ import annotations

import math
import re

from edgekd.errors import EdgekdError

_BYTE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(value: object, what: str = "size") -> int:
    """Return a byte count from ``64KB``, ``1.5 MiB``, ``4096`` (an int means bytes)."""
    if isinstance(value, bool):
        raise EdgekdError(f"{what}: expected a size such as '64KiB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise EdgekdError(f"{what}: size must not be negative, got {value}")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise EdgekdError(f"{what}: expected a size such as '64KiB', got {value!r}")
    match = _NUMBER_UNIT.match(value)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _BYTE_UNITS and unit != "":
        raise EdgekdError(
            f"{what}: cannot read size {value!r}; write a number with B, KB, KiB, MB, MiB, GB or GiB"
        )
    return int(round(float(match.group(1)) * _BYTE_UNITS[unit or "b"]))


def parse_ms(value: object, what: str = "latency") -> float:
    """Return milliseconds from ``50ms``, ``0.2 s``, ``800us`` or a bare number of milliseconds."""
    if isinstance(value, bool):
        raise EdgekdError(f"{what}: expected a duration such as '50ms', got {value!r}")
    if isinstance(value, int | float):
        number, unit = float(value), "ms"
    elif isinstance(value, str) and (match := _NUMBER_UNIT.match(value)):
        number, unit = float(match.group(1)), (match.group(2).lower() or "ms")
    else:
        raise EdgekdError(f"{what}: expected a duration such as '50ms', got {value!r}")
    if not math.isfinite(number):
        raise EdgekdError(f"{what}: expected a finite duration, got {value!r}")
    if unit not in _TIME_UNITS:
        raise EdgekdError(f"{what}: unknown time unit in {value!r}; use us, ms or s")
    if number < 0:
        raise EdgekdError(f"{what}: duration must not be negative, got {value!r}")
    return number * _TIME_UNITS[unit]


def format_bytes(n: int | float) -> str:
    """Human-readable binary size, e.g. ``53.5 KiB``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
