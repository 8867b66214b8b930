"""``edgekd search --space KEY=V1,V2``: restricting the families' search spaces from the command line.

Kept apart from :mod:`edgekd.search` so the search driver stays about trials and rungs, not argument parsing.
"""

from __future__ import annotations

from typing import Any

from edgekd.errors import EdgekdError


def check_space(space: dict[str, list[Any]], families: list[Any]) -> None:
    """``--space KEY=VALUES`` names a parameter of a searched family and only values of its space."""
    for key, values in space.items():
        owners = [f for f in families if key in (f.space or f.grid)]
        if not owners:
            raise EdgekdError(f"--space {key}: no searched family has that parameter; known: "
                              f"{', '.join(sorted({k for f in families for k in (f.space or f.grid)}))}")
        known = {v for f in owners for v in (f.space or f.grid)[key]}
        bad = [v for v in values if v not in known]
        if bad or not values:
            raise EdgekdError(f"--space {key}={','.join(map(str, values))}: choose among "
                              f"{', '.join(map(str, sorted(known, key=str)))} (none: no limit)")


def parse_space(items: list[str] | tuple[str, ...]) -> dict[str, list[Any]] | None:
    """``--space resolution=none,24 --space kernel=3,5`` as {"resolution": [None, 24], "kernel": [3, 5]}."""
    def value(text: str) -> Any:
        text = text.strip()
        if text.lower() == "none":
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    out: dict[str, list[Any]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key.strip() or not values.strip():
            raise EdgekdError(f"--space {item}: expected KEY=V1,V2 (e.g. resolution=none,24)")
        out[key.strip()] = [value(v) for v in values.split(",")]
    return out or None


def in_space(params: dict[str, Any], space: dict[str, list[Any]]) -> bool:
    """A drawn config is inside the ``--space`` restriction (parameters it lacks are unrestricted)."""
    return all(k not in params or params[k] in values for k, values in space.items())
