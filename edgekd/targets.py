"""Target profiles: one YAML file per real device, validated against a strict schema.

A profile says what the device has (cores, clock, memory), what share of it a model may use (the budgets),
which runtimes, formats and operators it supports, how fast it runs int8 / fp32 multiply-accumulates, and
which emulator stands in for it. Every number cites its datasheet under ``source``.

Validation errors are one line: ``FILE: FIELD: what is wrong``, raised as :class:`EdgekdError` (exit 2).
Cores, their ISA and what the emulators can run come from the one core table, :mod:`edgekd.cores`.
One module (over 400 lines): the schema, its checker and the profile search path are one contract whose
one-line messages users read; splitting them would scatter the rules a profile must follow.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgekd import cores
from edgekd.errors import EdgekdError
from edgekd.formats import FORMAT_NAMES, RUNTIME_NAMES
from edgekd.units import format_bytes, parse_bytes, parse_ms

CLASSES = ("phone", "sbc", "mcu")
QUANTIZATIONS = ("int8-full", "int8", "fp32")
RUNTIMES = RUNTIME_NAMES  # live views of the format plugins (edgekd.formats): a new format is valid at once
FORMATS = FORMAT_NAMES
EMULATOR_KINDS = ("qemu-system-arm", "qemu-aarch64", "none")
LINUX_CORES = cores.names(cores.LINUX)
MCU_CORES = cores.names(cores.MCU)
ISA_FEATURES = ("armv6-m", "armv7e-m", "armv8-m.main", "armv8.1-m.main", "armv8-a", "armv8.2-a", "armv9-a",
                "thumb2", "dsp", "fpv4-sp", "fpv5-sp", "fpv5-dp", "mve", "mve-f", "helium", "neon", "dotprod",
                "fp16", "i8mm", "sve2", "sme", "xtensa-simd", "pie")
# TFLite builtin operators we know how to reason about; a profile lists the subset it supports.
TFLITE_OPS = ("ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
              "FULLY_CONNECTED", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD",
              "QUANTIZE", "RELU", "RELU6", "RESHAPE", "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX", "TRANSPOSE",
              "SQUEEZE", "STRIDED_SLICE", "SUB", "TANH", "BATCH_MATMUL", "GATHER", "SUM")


@dataclass(frozen=True)
class Cpu:
    core: str
    count: int
    clock_mhz: float
    isa: tuple[str, ...]


@dataclass(frozen=True)
class Memory:
    flash_bytes: int
    ram_bytes: int
    model_budget_bytes: int
    ram_budget_bytes: int


@dataclass(frozen=True)
class Throughput:
    """MACs per cycle per core: sustained on real kernels, and the physical peak of the SIMD units."""

    int8_macs_per_cycle: float
    peak_int8_macs_per_cycle: float
    fp32_macs_per_cycle: float
    peak_fp32_macs_per_cycle: float
    threads: int
    op_overhead_us: float


@dataclass(frozen=True)
class Emulator:
    kind: str
    cpu: str | None
    machine: str | None
    note: str | None


@dataclass(frozen=True)
class Budgets:
    """What a model may use on the device: flash/storage for the model, RAM for tensors, latency."""

    flash_bytes: int
    ram_bytes: int
    latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    klass: str
    cpu: Cpu
    memory: Memory
    runtime_flash_bytes: int
    runtime_ram_bytes: int
    runtimes: tuple[str, ...]
    formats: tuple[str, ...]
    operators: tuple[str, ...]
    quantization: str
    latency_budget_ms: float
    throughput: Throughput
    emulator: Emulator
    source: dict[str, str]
    path: Path | None = None
    budgets: Budgets = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "budgets", Budgets(self.memory.model_budget_bytes,
                                                    self.memory.ram_budget_bytes, self.latency_budget_ms))

    @property
    def is_mcu(self) -> bool:
        return self.klass == "mcu"

    def with_budgets(self, flash: object = None, ram: object = None, latency: object = None) -> Target:
        """Return a copy whose budgets are overridden (values as users write them: '64KB', '20ms')."""
        memory = dataclasses.replace(
            self.memory,
            model_budget_bytes=parse_bytes(flash, "--flash-budget") if flash is not None
            else self.memory.model_budget_bytes,
            ram_budget_bytes=parse_bytes(ram, "--ram-budget") if ram is not None
            else self.memory.ram_budget_bytes,
        )
        latency_ms = parse_ms(latency, "--latency-budget") if latency is not None else self.latency_budget_ms
        for flag, value in (("--flash-budget", memory.model_budget_bytes), ("--ram-budget", memory.ram_budget_bytes),
                            ("--latency-budget", latency_ms)):
            if value <= 0:
                raise EdgekdError(f"{flag}: a budget must be larger than 0")
        if memory.ram_budget_bytes > memory.ram_bytes:
            raise EdgekdError(f"--ram-budget: {format_bytes(memory.ram_budget_bytes)} is more than "
                              f"{self.name}'s {format_bytes(memory.ram_bytes)} of RAM")
        if memory.model_budget_bytes > memory.flash_bytes:
            raise EdgekdError(f"--flash-budget: {format_bytes(memory.model_budget_bytes)} is more than "
                              f"{self.name}'s {format_bytes(memory.flash_bytes)} of flash/storage")
        return dataclasses.replace(self, memory=memory, latency_budget_ms=latency_ms)

    def summary(self) -> dict[str, Any]:
        """The short form `targets list --json` prints."""
        return {"name": self.name, "class": self.klass, "title": self.title, "core": self.cpu.core,
                "cores": self.cpu.count, "clock_mhz": self.cpu.clock_mhz, "budgets": self.budgets.to_dict(),
                "runtimes": list(self.runtimes)}

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["class"] = out.pop("klass")
        out["path"] = str(self.path) if self.path else None
        return out

    def text(self) -> str:
        """`edgekd targets show`: the whole profile, one section a line, then its sources."""
        b, tp, emu = self.budgets, self.throughput, self.emulator
        lines = [f"{self.name}: {self.title} [{self.klass}]",
                 f"  cpu        {self.cpu.count}x {self.cpu.core} @ {self.cpu.clock_mhz:g} MHz "
                 f"({', '.join(self.cpu.isa)})",
                 f"  memory     flash {format_bytes(self.memory.flash_bytes)}, "
                 f"RAM {format_bytes(self.memory.ram_bytes)}",
                 f"  budgets    model {format_bytes(b.flash_bytes)}, RAM {format_bytes(b.ram_bytes)}, "
                 f"latency {b.latency_ms:g} ms",
                 f"  runtime    {', '.join(self.runtimes)} (overhead flash {format_bytes(self.runtime_flash_bytes)}, "
                 f"RAM {format_bytes(self.runtime_ram_bytes)})",
                 f"  formats    {', '.join(self.formats)}; quantization {self.quantization}",
                 f"  operators  {', '.join(self.operators)}",
                 f"  throughput int8 {tp.int8_macs_per_cycle} (peak {tp.peak_int8_macs_per_cycle}) MACs/cycle/core, "
                 f"fp32 {tp.fp32_macs_per_cycle} (peak {tp.peak_fp32_macs_per_cycle}), {tp.threads} thread(s)",
                 f"  emulator   {emu.kind} {emu.machine or ''} {emu.cpu or ''}".rstrip()]
        return "\n".join(lines + [f"  source.{key}: {text}" for key, text in self.source.items()])


def table(found: Iterable[Target]) -> str:
    """`edgekd targets list`: one line per target, microcontrollers first, with its budgets."""
    order = {"mcu": 0, "sbc": 1, "phone": 2}
    lines = [f"{'name':<24} {'class':<6} {'cores':<17} {'MHz':>6} {'model budget':>13} {'RAM budget':>11} "
             f"{'latency':>9}"]
    for t in sorted(found, key=lambda t: (order[t.klass], t.name)):
        b = t.budgets
        lines.append(f"{t.name:<24} {t.klass:<6} {f'{t.cpu.count}x {t.cpu.core}':<17} {t.cpu.clock_mhz:>6g} "
                     f"{format_bytes(b.flash_bytes):>13} {format_bytes(b.ram_bytes):>11} {b.latency_ms:>7g}ms")
    return "\n".join(lines)


# ---------------------------------------------------------------- schema

class _Checker:
    """Reads one mapping of a profile and raises one-line errors naming file and field."""

    def __init__(self, origin: str, data: Any, prefix: str = "") -> None:
        self.origin, self.data, self.prefix = origin, data, prefix

    def fail(self, key: str, message: str) -> EdgekdError:
        return EdgekdError(f"{self.origin}: {self.prefix}{key}: {message}")

    def section(self, key: str, required: set[str], optional: set[str] = frozenset()) -> _Checker:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        sub = _Checker(self.origin, value, f"{self.prefix}{key}.")
        sub.keys(required, optional)
        return sub

    def keys(self, required: set[str], optional: set[str] = frozenset()) -> None:
        if not isinstance(self.data, dict):
            raise EdgekdError(f"{self.origin}: expected a YAML mapping at the top level")
        for key in self.data:
            if key not in required | set(optional):
                raise self.fail(str(key), f"unknown key; allowed: {', '.join(sorted(required | set(optional)))}")
        for key in sorted(required):
            if key not in self.data:
                raise self.fail(key, "missing required field")

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def string(self, key: str, choices: tuple[str, ...] | None = None, optional: bool = False) -> str | None:
        value = self.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"{value!r} is not one of: {', '.join(choices)}")
        return value

    def number(self, key: str, integer: bool = False, minimum: float = 0.0, strict: bool = True) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
            kind = "a whole number" if integer else "a number"
            raise self.fail(key, f"expected {kind}, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be a finite number, got {value}")
        if value < minimum or (strict and value == minimum):
            raise self.fail(key, f"must be {'>' if strict else '>='} {minimum}, got {value}")
        return value

    def size(self, key: str) -> int:
        try:
            value = parse_bytes(self.get(key), "size")
        except EdgekdError as exc:
            raise self.fail(key, str(exc).split(": ", 1)[1]) from None
        if value <= 0:
            raise self.fail(key, "must be larger than 0")
        return value

    def duration(self, key: str) -> float:
        try:
            value = parse_ms(self.get(key), "duration")
        except EdgekdError as exc:
            raise self.fail(key, str(exc).split(": ", 1)[1]) from None
        if value <= 0:
            raise self.fail(key, "must be larger than 0")
        return value

    def names(self, key: str, allowed: Iterable[str]) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected a non-empty list of names")
        for item in value:
            if item not in allowed:
                raise self.fail(key, f"unknown name {item!r}; known: {', '.join(allowed)}")
        if len(set(value)) != len(value):
            raise self.fail(key, "lists a name twice")
        return tuple(value)


TOP_KEYS = {"name", "title", "class", "cpu", "memory", "runtime_overhead", "runtimes", "formats", "operators",
            "quantization", "latency_budget", "throughput", "emulator", "source"}


def parse_target(data: Any, origin: str = "<profile>", path: Path | None = None) -> Target:
    """Validate a loaded YAML mapping and build a :class:`Target`; raise one-line errors."""
    top = _Checker(origin, data)
    top.keys(TOP_KEYS, {"notes"})
    name = top.string("name")
    if path is not None and path.stem != name:
        raise top.fail("name", f"{name!r} must match the file name {path.stem!r}")
    klass = top.string("class", CLASSES)

    c = top.section("cpu", {"core", "count", "clock_mhz", "isa"}, {"clusters"})
    core = c.string("core", MCU_CORES if klass == "mcu" else LINUX_CORES)
    cpu = Cpu(core, int(c.number("count", integer=True)), float(c.number("clock_mhz")),
              c.names("isa", ISA_FEATURES))

    m = top.section("memory", {"flash", "ram", "model_budget", "ram_budget"})
    memory = Memory(m.size("flash"), m.size("ram"), m.size("model_budget"), m.size("ram_budget"))
    if memory.model_budget_bytes > memory.flash_bytes:
        raise m.fail("model_budget", f"{format_bytes(memory.model_budget_bytes)} is larger than memory.flash "
                                     f"({format_bytes(memory.flash_bytes)})")
    if memory.ram_budget_bytes > memory.ram_bytes:
        raise m.fail("ram_budget", f"{format_bytes(memory.ram_budget_bytes)} is larger than memory.ram "
                                   f"({format_bytes(memory.ram_bytes)})")

    o = top.section("runtime_overhead", {"flash", "ram"})
    runtime_flash, runtime_ram = o.size("flash"), o.size("ram")

    runtimes = top.names("runtimes", RUNTIMES)
    formats = top.names("formats", FORMATS)
    operators = top.names("operators", TFLITE_OPS)
    quantization = top.string("quantization", QUANTIZATIONS)
    if klass == "mcu":
        if quantization != "int8-full":
            raise top.fail("quantization", "microcontrollers need full-integer int8 ('int8-full')")
        if "tflm" not in runtimes:
            raise top.fail("runtimes", "a microcontroller profile must list 'tflm'")
    latency = top.duration("latency_budget")

    t = top.section("throughput", {"int8_macs_per_cycle", "peak_int8_macs_per_cycle", "fp32_macs_per_cycle",
                                   "peak_fp32_macs_per_cycle", "threads", "op_overhead_us"})
    throughput = Throughput(float(t.number("int8_macs_per_cycle")), float(t.number("peak_int8_macs_per_cycle")),
                            float(t.number("fp32_macs_per_cycle")), float(t.number("peak_fp32_macs_per_cycle")),
                            int(t.number("threads", integer=True)),
                            float(t.number("op_overhead_us", strict=False)))
    for kind in ("int8", "fp32"):
        if getattr(throughput, f"{kind}_macs_per_cycle") > getattr(throughput, f"peak_{kind}_macs_per_cycle"):
            raise t.fail(f"{kind}_macs_per_cycle", f"sustained rate is above peak_{kind}_macs_per_cycle")
    if throughput.threads > cpu.count:
        raise t.fail("threads", f"{throughput.threads} threads but cpu.count is {cpu.count}")

    e = top.section("emulator", {"kind"}, {"cpu", "machine", "note"})
    emu_kind = e.string("kind", emulator_kinds())
    emulator = Emulator(emu_kind, e.string("cpu", optional=True), e.string("machine", optional=True),
                        e.string("note", optional=True))
    if emu_kind == "qemu-system-arm" and (emulator.machine is None or emulator.cpu is None):
        raise e.fail("machine", "qemu-system-arm needs both 'machine' (e.g. mps2-an386) and 'cpu'")
    if emu_kind == "qemu-aarch64" and emulator.cpu is None:
        raise e.fail("cpu", "qemu-aarch64 needs 'cpu' (a real core such as cortex-a72; never 'max')")
    if emulator.cpu == "max":
        raise e.fail("cpu", "'max' gives wrong int8 results under QEMU; name the real core")
    if emu_kind == "none" and emulator.note is None:
        raise e.fail("note", "say why no emulator stands in for this device")
    _check_emulator(e, emulator, klass, core)
    arch = cores.CORES[core].arch
    if arch in ISA_FEATURES and arch not in cpu.isa:
        raise c.fail("isa", f"{core} is an {arch} core (edgekd.cores); list {arch} in isa")

    s = top.get("source")
    if not isinstance(s, dict) or not s:
        raise top.fail("source", "expected a mapping of field -> datasheet or product page")
    for key in ("cpu", "memory"):
        if not isinstance(s.get(key), str) or not s[key].strip():
            raise top.fail(f"source.{key}", "cite the datasheet or product page this comes from")
    source = {str(k): str(v) for k, v in s.items()}

    return Target(name, top.string("title"), klass, cpu, memory, runtime_flash, runtime_ram, runtimes, formats,
                  operators, quantization, latency, throughput, emulator, source, path)


def emulator_kinds() -> tuple[str, ...]:
    """The built-in emulator kinds plus any a plugin registered (``edgekd.emulate.register_emulator``)."""
    import sys

    registry = sys.modules.get("edgekd.emulate")  # only if loaded: profiles validate without importing numpy
    extra = tuple(k for k in getattr(registry, "EMULATORS", {}) if k not in EMULATOR_KINDS)
    return EMULATOR_KINDS + extra


def _check_emulator(e: _Checker, emulator: Emulator, klass: str, core: str) -> None:
    """Check kind / machine / cpu against the core table (:mod:`edgekd.cores`), so `targets validate` catches
    what a build would only hit after distillation (QEMU refusing the board or core)."""
    boards, m_cores, a_cores = cores.BOARDS, cores.cortex_m_cores(), cores.aarch64_cores()

    if emulator.kind == "qemu-system-arm":
        if klass != "mcu":
            raise e.fail("kind", f"qemu-system-arm runs microcontroller firmware; a {klass} profile uses "
                                 "qemu-aarch64 or none")
        if emulator.machine not in boards:
            raise e.fail("machine", f"{emulator.machine!r} is not a QEMU board edgekd's qemu-system-arm emulator "
                                    f"knows; known: {', '.join(boards)}")
        board = boards[emulator.machine]
        if emulator.cpu != board.cpu:
            known = ", ".join(f"{name} ({b.cpu})" for name, b in boards.items())
            raise e.fail("cpu", f"{emulator.cpu!r} does not run on QEMU's {emulator.machine}, which only takes "
                                f"{board.cpu!r}; known boards (cpu): {known}")
        if core not in m_cores:
            raise e.fail("kind", f"cpu.core {core!r} has no Cortex-M build recipe for qemu-system-arm (known: "
                                 f"{', '.join(m_cores)}); use kind 'none' with a note")
    elif emulator.kind == "qemu-aarch64":
        if klass == "mcu":
            raise e.fail("kind", "qemu-aarch64 runs Linux-class devices; a microcontroller uses qemu-system-arm "
                                 "or none")
        if emulator.machine is not None:
            raise e.fail("machine", "qemu-aarch64 runs user-mode and takes no machine; remove it")
        if emulator.cpu not in a_cores:
            raise e.fail("cpu", f"{emulator.cpu!r} is not a core edgekd's qemu-aarch64 emulator knows; known: "
                                f"{', '.join(sorted(a_cores))}")


# ---------------------------------------------------------------- finding and loading

def search_dirs() -> list[Path]:
    """Where named targets are looked up: $EDGEKD_TARGETS (colon-separated), ./targets, the bundled set."""
    dirs = [Path(p) for p in os.environ.get("EDGEKD_TARGETS", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "targets", Path(__file__).resolve().parent.parent / "targets"]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


MAX_PROFILE_BYTES = 256 * 1024  # real profiles are ~3 KiB; PyYAML needs ~6 s per MB
MAX_PROFILE_DEPTH = 16  # real profiles nest 3 levels; PyYAML's loader recurses per level


def _read_profile(path: Path) -> str:
    """The profile's text, refusing what is not a small UTF-8 file before YAML ever sees it."""
    if path.is_dir():
        raise EdgekdError(f"{path}: is a folder, not a target profile; give a .yaml file")
    if not path.exists():
        raise EdgekdError(f"{path}: no such target file")
    if not path.is_file():
        raise EdgekdError(f"{path}: not a regular file; give a .yaml target profile")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise EdgekdError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise EdgekdError(f"{path}: larger than {MAX_PROFILE_BYTES // 1024} KiB, the most a target profile may "
                          "be (real ones are a few KiB); start from targets/nrf52840-dk.yaml")
    if not raw.strip():
        raise EdgekdError(f"{path}: empty file; a target profile is a YAML mapping, start from "
                          "targets/nrf52840-dk.yaml")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EdgekdError(f"{path}: not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); a target profile "
                          "is a YAML text file") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's own one-line reason, with the line where it knows it."""
    line = getattr(getattr(exc, "problem_mark", None), "line", None)
    where = f" (line {line + 1})" if line is not None else ""
    reason = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).strip().split("\n")[0]
    return f"not valid YAML{where}: {' '.join(str(reason).split())}"


def _check_structure(text: str, path: Path) -> None:
    """Walk the YAML events (PyYAML's parser is iterative) to refuse what would blow up the recursive loader:
    deep nesting (RecursionError) and aliases, which can expand exponentially ("billion laughs")."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_PROFILE_DEPTH:
                raise EdgekdError(f"{path}: nested more than {MAX_PROFILE_DEPTH} levels deep (line {line}); a "
                                  "target profile is a few levels of mappings and lists")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            raise EdgekdError(f"{path}: uses the YAML alias *{event.anchor} (line {line}); target profiles may "
                              "not use anchors/aliases, write the value out")


def load_target_file(path: str | Path) -> Target:
    """Read, parse and validate one profile; every way a file can be wrong is one EdgekdError line."""
    path = Path(path)
    text = _read_profile(path)
    try:
        _check_structure(text, path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EdgekdError(f"{path}: {_yaml_problem(exc)}") from None
    except RecursionError:  # unreachable after the depth check; kept so no input can print a traceback
        raise EdgekdError(f"{path}: nested too deeply for the YAML loader") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date like 2024-13-45 that YAML reads
        raise EdgekdError(f"{path}: not valid YAML: a value cannot be read ({' '.join(str(exc).split())})") from None
    return parse_target(data, str(path), path)


def available() -> dict[str, Path]:
    """Target name -> profile path; the first directory in :func:`search_dirs` wins."""
    found: dict[str, Path] = {}
    for d in search_dirs():
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found


def load_target(name_or_path: str | Path) -> Target:
    """Load a target by name (``nrf52840-dk``) or by path to a YAML file."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        return load_target_file(text)
    profiles = available()
    if text not in profiles:
        raise EdgekdError(f"unknown target {text!r}; `edgekd targets list` shows the {len(profiles)} known ones, "
                          "or pass a path to a YAML profile")
    return load_target_file(profiles[text])


def load_all() -> list[Target]:
    return [load_target_file(p) for p in available().values()]
