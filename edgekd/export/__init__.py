"""Exporters: turn a trained student into deployable files, one registered exporter per format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgekd.errors import EdgekdError

EXPORTERS: dict[str, Callable[..., Any]] = {}


def register_exporter(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an exporter function under a format name (``tflite``, ``pte`` ...)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        EXPORTERS[name] = fn
        return fn

    return wrap


def get_exporter(name: str) -> Callable[..., Any]:
    if name not in EXPORTERS:
        raise EdgekdError(f"unknown export format {name!r}; known: {', '.join(sorted(EXPORTERS))}")
    return EXPORTERS[name]


from edgekd.export import tflite  # noqa: E402,F401  (registers the exporter)
