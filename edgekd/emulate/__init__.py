"""Device emulators, registered by the profile's ``emulator.kind``.

An emulator takes an exported build folder and a sample of the test set, runs each artifact the way the device
would (an aarch64 Python under ``qemu-aarch64`` for Linux-class targets, generated C on a ``qemu-system-arm``
board for microcontrollers), and returns one :class:`EmulatedRun` per (artifact, kernels) pair, whose
``details`` is the emulator's own typed record (an :class:`EmulatorDetails` subclass). Adding an emulator is one
module that calls :func:`register_emulator`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.targets import Target
from edgekd.tools import require_tool

if TYPE_CHECKING:
    from edgekd.formats.tflite import TfliteDetails

CACHE_ENV = "EDGEKD_CACHE"
EMULATOR_CACHE_ENV = "EDGEKD_EMULATOR_CACHE"


@dataclass
class EmulatorDetails:
    """What one emulator records about a run beyond :class:`EmulatedRun`'s common fields (subclass it; the base
    holds nothing). Serialised as the run's ``details`` object in verify.json: every field under its own name."""

    def to_json(self) -> dict[str, Any]:
        from edgekd.formats.base import plain

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EmulatorDetails:
        """Fields by name (absent ones take their default); a subclass with derived keys overrides this."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def cpi_note(self) -> str | None:
        """Where the run's cycles per instruction came from (its ``cpi_source``), for the report's latency method."""
        return None

    def report_fields(self) -> dict[str, Any]:
        """Keys report.json lifts into the run's artifact entry (a board build's flash, RAM and arena bytes)."""
        return {}


@dataclass
class EmulatedRun:
    """One artifact run under emulation, compared with the same runtime on the host.

    ``max_diff_vs_host`` is in quantization steps for integer outputs and absolute for float outputs;
    ``bit_exact_vs_host`` is None for float models (compared with a tolerance instead).
    ``instructions`` are guest instructions per invoke, counted by the emulator; ``counted_ms`` turns them
    into time with the profile's clock and ``cpi`` (see docs/emulators.md for where each CPI comes from).
    """

    emulator: str
    format: str
    precision: str
    runtime: str
    kernels: str | None
    path: str
    samples: int
    ok: bool
    accuracy: float | None = None
    host_accuracy: float | None = None
    agreement: float | None = None
    bit_exact_vs_host: bool | None = None
    max_diff_vs_host: float | None = None
    instructions: int | None = None
    cpi: float | None = None
    counted_ms: float | None = None
    threads: int | None = None
    error: str | None = None
    log_tail: str | None = None
    details: EmulatorDetails | None = None  # None: the run failed before its emulator recorded anything

    def to_dict(self) -> dict[str, Any]:
        """The run as verify.json stores it (``details``: the emulator's record, ``{}`` when there is none)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "details"}
        return out | {"details": self.details.to_json() if self.details is not None else {}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EmulatedRun:
        """A run back from verify.json; its details are typed by the emulator kind named before the ``/``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"details"}
        raw = d.get("details") or {}
        return cls(**{k: v for k, v in d.items() if k in names},
                   details=details_type(str(d["emulator"]).split("/", 1)[0]).from_json(raw) if raw else None)


@dataclass
class EmulationRequest:
    """What every emulator gets: the exported build, the target, and a sample of labelled inputs.

    ``x`` is float input in the student's layout (N, C, H, W or N, C, L), ``y`` the labels.
    """

    build_dir: Path
    target: Target
    x: np.ndarray
    y: np.ndarray
    timeout_s: float = 600.0
    count: bool = True
    work_dir: Path | None = None


def model_inputs(x: np.ndarray, details: TfliteDetails) -> np.ndarray:
    """Float channels-first inputs -> a .tflite's own layout and input type (quantized for int8 models), from
    its typed export details: what every emulated run feeds the device."""
    x = details.model_layout(x)
    if details.input.dtype != "float32":
        return np.ascontiguousarray(details.input.quantize(x))
    return np.ascontiguousarray(x, dtype=np.float32)


def log_tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a run's output: what a failed gate shows."""
    return "\n".join(text.strip().splitlines()[-lines:])


def exactness(run: dict[str, Any]) -> str:
    """How an emulated run's outputs compare with the host's, in a few words (for tables and logs)."""
    if run["bit_exact_vs_host"] is True:
        return "bit-exact"
    if run["bit_exact_vs_host"] is False:
        return f"max {run['max_diff_vs_host']:g} steps"
    return f"max {run['max_diff_vs_host']:.1e}"


EmulatorFn = Callable[[EmulationRequest], list[EmulatedRun]]
EMULATORS: dict[str, EmulatorFn] = {}
DETAILS: dict[str, type[EmulatorDetails]] = {}
__all__ = ["DETAILS", "EMULATORS", "EmulatedRun", "EmulationRequest", "EmulatorDetails", "emulate",
           "register_emulator", "require_tool"]


def register_emulator(kind: str, details: type[EmulatorDetails] = EmulatorDetails
                      ) -> Callable[[EmulatorFn], EmulatorFn]:
    """Register ``fn`` as the emulator for profiles whose ``emulator.kind`` is ``kind``; its runs' ``details``
    are ``details`` records (run names start with ``kind/``, so verify.json reads them back typed)."""
    def wrap(fn: EmulatorFn) -> EmulatorFn:
        EMULATORS[kind] = fn
        DETAILS[kind] = details
        return fn
    return wrap


def details_type(kind: str) -> type[EmulatorDetails]:
    """The details record of an emulator kind (the base record for a kind no imported module registers)."""
    if kind not in DETAILS:
        _load_builtin()
    return DETAILS.get(kind, EmulatorDetails)


def cache_dir() -> Path:
    """Where provisioned roots and built helpers live: ``$EDGEKD_EMULATOR_CACHE``, else ``emulators/`` under
    ``$EDGEKD_CACHE`` or ``~/.cache/edgekd`` (its own variable so tests with private caches share one root)."""
    import os
    if os.environ.get(EMULATOR_CACHE_ENV):
        return Path(os.environ[EMULATOR_CACHE_ENV])
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "edgekd") / "emulators"


def emulate(request: EmulationRequest) -> list[EmulatedRun]:
    """Run ``request.build_dir``'s artifacts on the emulator the target's profile names."""
    _load_builtin()
    kind = request.target.emulator.kind
    if kind == "none":
        raise EdgekdError(f"target {request.target.name} has no emulator: {request.target.emulator.note}")
    if kind not in EMULATORS:
        raise EdgekdError(f"target {request.target.name}: unknown emulator kind {kind!r} "
                          f"(known: {', '.join(sorted(EMULATORS))})")
    return EMULATORS[kind](replace(request, build_dir=Path(request.build_dir).resolve()))


def _load_builtin() -> None:
    from edgekd.emulate import aarch64, cortex_m  # noqa: F401
