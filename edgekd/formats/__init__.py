"""Export formats as plugins: one file per format, each registering one :class:`Format`.

A format owns everything edgekd does with its files: the exporter, the runs on the host runtimes that
``edgekd verify`` compares with the float student, the test vectors it adds to a bundle and the check
``package verify`` reruns on them, its extra bundle entries, and its typed ``details`` in export.json.
Export, verify, package and the target schema only loop over :func:`formats`; adding a format is one new
module that calls :func:`register_format` (see docs/architecture.md, "Adding a format").

This module imports nothing heavy and nothing that imports it back (targets.py reads the names from here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from edgekd.errors import EdgekdError
from edgekd.formats.base import Details, Format, HostRun, VectorCheck

if TYPE_CHECKING:
    pass

_REGISTRY: dict[str, Format] = {}
_BUILTIN = ("tflite", "pte", "c")
_loaded = False


def register_format(fmt: Format) -> Format:
    """Register ``fmt`` under ``fmt.name`` (a later registration of the same name replaces it)."""
    _REGISTRY[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Forget a format (tests that register a dummy one clean up with this)."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import importlib

        for name in _BUILTIN:
            importlib.import_module(f"edgekd.formats.{name}")


def formats() -> list[Format]:
    """Every registered format in export order: a format runs after the ones it ``needs``."""
    _load_builtin()
    done: list[Format] = []
    pending = list(_REGISTRY.values())
    while pending:
        ready = [f for f in pending if all(n in {d.name for d in done} or n not in _REGISTRY for n in f.needs)]
        if not ready:
            raise EdgekdError(f"export formats need each other in a circle: {', '.join(f.name for f in pending)}")
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def get_format(name: str) -> Format:
    _load_builtin()
    if name not in _REGISTRY:
        raise EdgekdError(f"unknown export format {name!r}; known: {', '.join(f.name for f in formats())}")
    return _REGISTRY[name]


class _Names:
    """A live, tuple-like view of registered names (``targets.FORMATS`` / ``RUNTIMES``): a format registered
    after import is valid in a profile at once."""

    def __init__(self, runtimes: bool) -> None:
        self._runtimes = runtimes

    def _names(self) -> tuple[str, ...]:
        if not self._runtimes:
            return tuple(f.name for f in formats())
        seen: dict[str, None] = {}
        for f in formats():
            seen.update(dict.fromkeys(f.runtimes))
        return tuple(seen)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


FORMAT_NAMES = _Names(runtimes=False)
RUNTIME_NAMES = _Names(runtimes=True)

__all__ = ["FORMAT_NAMES", "RUNTIME_NAMES", "Details", "Format", "HostRun", "VectorCheck", "formats", "get_format",
           "register_format", "unregister_format"]
