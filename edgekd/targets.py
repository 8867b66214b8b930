"""Target profiles: one YAML file per real device, validated against a strict schema.

A profile says what the device has (cores, clock, memory), what share of it a model may use (the budgets),
which runtimes, formats and operators it supports, how fast it runs int8 / fp32 multiply-accumulates, and
which emulator stands in for it. Every number cites its datasheet under ``source``.

Validation errors are one line: ``FILE: FIELD: what is wrong``, raised as :class:`EdgekdError` (exit 2).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgekd.errors import EdgekdError
from edgekd.units import format_bytes, parse_bytes, parse_ms

CLASSES = ("phone", "sbc", "mcu")
QUANTIZATIONS = ("int8-full", "int8", "fp32")
RUNTIMES = ("tflm", "litert", "executorch-xnnpack", "edgekd-c")
FORMATS = ("tflite", "pte", "c")
EMULATOR_KINDS = ("qemu-system-arm", "qemu-aarch64", "none")
LINUX_CORES = ("cortex-a53", "cortex-a55", "cortex-a72", "cortex-a76", "cortex-a78", "cortex-a510",
               "cortex-a520", "cortex-a715", "cortex-a720", "cortex-x3", "cortex-x4", "neoverse-n1")
MCU_CORES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55",
             "cortex-m85", "xtensa-lx7", "riscv32")
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

    def names(self, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
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
    emu_kind = e.string("kind", EMULATOR_KINDS)
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

    s = top.get("source")
    if not isinstance(s, dict) or not s:
        raise top.fail("source", "expected a mapping of field -> datasheet or product page")
    for key in ("cpu", "memory"):
        if not isinstance(s.get(key), str) or not s[key].strip():
            raise top.fail(f"source.{key}", "cite the datasheet or product page this comes from")
    source = {str(k): str(v) for k, v in s.items()}

    return Target(name, top.string("title"), klass, cpu, memory, runtime_flash, runtime_ram, runtimes, formats,
                  operators, quantization, latency, throughput, emulator, source, path)


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


def load_target_file(path: str | Path) -> Target:
    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: no such target file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise EdgekdError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
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
