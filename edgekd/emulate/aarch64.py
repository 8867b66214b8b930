"""Raspberry Pi and phone targets: run the exported .tflite and .pte under ``qemu-aarch64`` on the profile's core.

Provisioning (once, cached under ``~/.cache/edgekd/aarch64``): an arm64 Debian root extracted by mmdebstrap
(no chroot, no binfmt), the aarch64 wheels of the same ai-edge-litert / numpy / executorch versions the host
uses, a torch-free ExecuTorch runner cross-built with aarch64-linux-gnu-g++ against the executorch wheel, and
edgekd's QEMU plugin that counts instructions by class between marker syscalls (native/insn_class.c).

Every run pins a real core (``-cpu cortex-a72``, never ``max``: its SME paths gave wrong int8 outputs) and
sees stand-in ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` for that core: LiteRT's and ExecuTorch's CPU
detection reads them, segfaults on the x86 host's, and silently drops XNNPACK on empty ones. Whether XNNPACK
really ran is checked (LiteRT's execution plan has its DELEGATE node).

One module (just over 400 lines) because provisioning, the stand-in CPU files and the guest runs share one
cached root layout; the core data itself lives in ``edgekd/cores.py`` and the cycle model that turns counted
instruction classes into time in ``edgekd/emulate/timing_a.py``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.cores import Core, aarch64_cores
from edgekd.emulate import (
    EmulatedRun,
    EmulationRequest,
    cache_dir,
    log_tail,
    model_inputs,
    register_emulator,
    require_tool,
    timing_a,
)
from edgekd.emulate.qemu_plugin import NATIVE, build_plugin
from edgekd.errors import EdgekdError
from edgekd.logs import log
from edgekd.targets import Target

LOG_TAIL_LINES = 15
EMPTY_WINDOWS = 1_000_000  # window ids the guest runner gives its empty (marker-only) windows


#: The cores this emulator stands in for (MIDR, /proc/cpuinfo features): :mod:`edgekd.cores`; their timing: timing_a.
CORES: dict[str, Core] = aarch64_cores()

# The guest side of a LiteRT run; also run by the host Python, so both sides are the same code.
_LITERT_RUNNER = r"""
import ctypes, json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
model, inputs, outputs, kernels, threads = sys.argv[1:6]
mark = ctypes.CDLL(None).syscall
resolver = OpResolverType.BUILTIN_REF if kernels == "reference" else OpResolverType.AUTO
it = Interpreter(model_path=model, num_threads=int(threads), experimental_op_resolver_type=resolver)
it.allocate_tensors()
inp, out = it.get_input_details()[0], it.get_output_details()[0]
delegated = any(op["op_name"] == "DELEGATE" for op in it._get_ops_details())
x = np.load(inputs)
for n in range(8):  # empty windows: what the markers themselves cost
    mark(0xED6E, 1, 1000000 + n)
    mark(0xED6E, 2, 1000000 + n)
ys = []
for n, row in enumerate(x):
    it.set_tensor(inp["index"], row.reshape(inp["shape"]))
    mark(0xED6E, 1, n)
    it.invoke()
    mark(0xED6E, 2, n)
    ys.append(it.get_tensor(out["index"])[0].copy())
np.save(outputs, np.stack(ys))
print("EDGEKD " + json.dumps({"delegated": delegated}))
"""


@dataclass(frozen=True)
class Root:
    """A provisioned arm64 root: python3.11 + wheels under ``site``, the ExecuTorch runner, the plugin."""

    path: Path
    site: Path
    pte_runner: Path
    plugin: Path | None


def _versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("ai-edge-litert", "numpy", "executorch")}


def _run(cmd: list[str], what: str, timeout: float = 900, **kw: Any) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise EdgekdError(f"provisioning the aarch64 root failed at {what}: {' | '.join(tail)}")


def provision(base: Path | None = None) -> Root:
    """The cached arm64 root for this host's runtime versions, built on first use (about 30 s)."""
    require_tool("qemu-aarch64", "qemu-user")
    versions = _versions()
    runner_src = (NATIVE / "pte_runner.cpp").read_bytes()
    key = hashlib.sha256(json.dumps(versions, sort_keys=True).encode() + runner_src).hexdigest()[:12]
    base = base or cache_dir() / "aarch64"
    root = base / f"root-{key}"
    if not (root / ".edgekd-ready").is_file():
        _provision_root(root, versions)
    plugin = build_plugin(cache_dir() / "plugins", "insn_class.c")
    return Root(root, root / "opt" / "site", root / "opt" / "executorch" / "pte_runner", plugin)


def _provision_root(root: Path, versions: dict[str, str]) -> None:
    mmdebstrap = require_tool("mmdebstrap", "mmdebstrap")
    gxx = require_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    log.info("provisioning an arm64 Debian root with %s (first use, ~30 s)", ", ".join(
        f"{k} {v}" for k, v in versions.items()))
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    try:
        fs = tmp / "fs"
        _run([mmdebstrap, "--quiet", "--variant=extract", "--architectures=arm64",
              "--include=python3.11,libstdc++6", "bookworm", str(fs)], "mmdebstrap", timeout=900)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--only-binary=:all:",
               "--python-version", "3.11", "--platform", "manylinux_2_27_aarch64", "--platform",
               "manylinux_2_28_aarch64"]
        _run(pip + ["--target", str(fs / "opt" / "site"), f"ai-edge-litert=={versions['ai-edge-litert']}",
                    f"numpy=={versions['numpy']}"],
             "pip install (aarch64 wheels)")
        wheels = tmp / "wheels"
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--python-version", "3.11", "--platform", "manylinux_2_28_aarch64", "-d", str(wheels),
              f"executorch=={versions['executorch']}"], "pip download executorch (aarch64)")
        _build_pte_runner(gxx, next(wheels.glob("executorch-*.whl")), fs / "opt" / "executorch", tmp)
        (fs / ".edgekd-ready").write_text(json.dumps(versions) + "\n")
        if root.exists():
            shutil.rmtree(root)
        fs.replace(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_pte_runner(gxx: str, wheel: Path, dest: Path, tmp: Path) -> None:
    """Cross-build native/pte_runner.cpp against the aarch64 executorch wheel's C++ headers and libraries."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp / "et", [n for n in z.namelist() if n.startswith(("executorch/include/",
                                                                            "executorch/lib/"))])
    et = tmp / "et" / "executorch"
    # The wheel's portable c10 copy lacks this generated header; an include guard is all it needs.
    shim = tmp / "shim" / "torch" / "headeronly" / "macros"
    shim.mkdir(parents=True)
    (shim / "cmake_macros.h").write_text("#ifndef C10_MACROS_CMAKE_MACROS_H_\n#define C10_MACROS_CMAKE_MACROS_H_\n"
                                         "#endif\n")
    dest.mkdir(parents=True)
    shutil.copytree(et / "lib", dest / "lib", ignore=shutil.ignore_patterns("cmake", "*openvino*", "*qnn*"))
    _run([gxx, "-std=c++17", "-O2", "-w", f"-I{et / 'include'}",
          f"-I{et / 'include' / 'executorch' / 'runtime' / 'core' / 'portable_type' / 'c10'}", f"-I{tmp / 'shim'}",
          str(NATIVE / "pte_runner.cpp"), f"-L{et / 'lib'}", "-Wl,-rpath,$ORIGIN/lib", "-Wl,--no-as-needed",
          "-lexecutorch", "-lexecutorch_backend_xnnpack", "-lexecutorch_kernels_optimized",
          "-lexecutorch_kernels_quantized", "-lexecutorch_threadpool", "-o", str(dest / "pte_runner")],
         "building the ExecuTorch runner")


def core_of(target: Target) -> tuple[str, Core]:
    """The QEMU CPU model a profile names, or an error naming it and the known ones."""
    name = target.emulator.cpu or ""
    if name not in CORES:
        raise EdgekdError(f"target {target.name}: emulator core {name!r} is not known to edgekd's qemu-aarch64 "
                          f"emulator (known: {', '.join(sorted(CORES))}); fix emulator.cpu in {target.path}")
    return name, CORES[name]


def stand_in_root(root: Root, target: Target) -> Path:
    """A view of ``root`` whose /proc/cpuinfo and /sys/devices/system/cpu describe the target's cores."""
    name, core = core_of(target)
    n, khz = target.cpu.count, int(target.cpu.clock_mhz * 1000)
    view = root.path.parent / f"{root.path.name}-{name}-{n}x{khz}"
    if (view / ".edgekd-ready").is_file():
        return view
    tmp = Path(tempfile.mkdtemp(prefix=view.name + ".", dir=view.parent))
    for entry in root.path.iterdir():
        if entry.name not in ("proc", "sys", ".edgekd-ready"):
            (tmp / entry.name).symlink_to(entry)
    (tmp / "proc").mkdir()
    block = (f"BogoMIPS\t: 108.00\nFeatures\t: {core.features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
             f"CPU variant\t: {core.variant:#x}\nCPU part\t: {core.part:#x}\nCPU revision\t: {core.revision}\n\n")
    (tmp / "proc" / "cpuinfo").write_text("".join(f"processor\t: {i}\n{block}" for i in range(n)))
    cpus = tmp / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True)
    for f in ("possible", "present", "online"):
        (cpus / f).write_text(f"0-{n - 1}\n")
    midr = f"0x{(0x41 << 24) | (core.variant << 20) | (0xF << 16) | (core.part << 4) | core.revision:016x}\n"
    for i in range(n):
        d = cpus / f"cpu{i}"
        files = {"cpufreq/cpuinfo_max_freq": f"{khz}\n", "cpufreq/cpuinfo_min_freq": f"{khz}\n",
                 "topology/core_siblings_list": f"0-{n - 1}\n", "topology/package_cpus_list": f"0-{n - 1}\n",
                 "topology/cluster_cpus_list": f"0-{n - 1}\n", "topology/thread_siblings_list": f"{i}\n",
                 "topology/physical_package_id": "0\n", "topology/core_id": f"{i}\n",
                 "regs/identification/midr_el1": midr}
        for rel, text in files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
    (tmp / ".edgekd-ready").write_text(name + "\n")
    if view.exists():
        shutil.rmtree(view)
    tmp.replace(view)
    return view


@dataclass
class GuestRun:
    """Raw outputs of one emulated process, its per-invoke instruction counts (total and by class), and what it
    printed."""

    ok: bool
    outputs: np.ndarray | None
    instructions: list[int]
    overhead: int
    log: str
    info: dict[str, Any]
    error: str | None = None
    classes: list[dict[str, int]] = field(default_factory=list)


def run_guest(root: Root, view: Path, cpu: str, argv: list[str], outputs: Path, counts: Path | None,
              timeout: float, env: dict[str, str] | None = None) -> GuestRun:
    """Run ``argv`` (guest paths are host paths: user mode) under qemu-aarch64 on ``cpu`` with a timeout."""
    cmd = [require_tool("qemu-aarch64", "qemu-user"), "-cpu", cpu, "-L", str(view)]
    if counts is not None and root.plugin is not None:
        cmd += ["-plugin", f"{root.plugin},out={counts}"]
    full_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root.site), "PYTHONNOUSERSITE": "1",
                "PYTHONHASHSEED": "0", "HOME": str(view), "LC_ALL": "C.UTF-8", **(env or {})}
    try:
        proc = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as exc:
        text = _text(exc.stdout) + _text(exc.stderr)
        return GuestRun(False, None, [], 0, _tail(text), {}, f"timed out after {timeout:.0f} s under qemu-aarch64 "
                        f"-cpu {cpu}")
    text = proc.stdout + proc.stderr
    if proc.returncode != 0 or not outputs.is_file():
        return GuestRun(False, None, [], 0, _tail(text), {}, f"crashed under qemu-aarch64 -cpu {cpu} "
                        f"(exit code {proc.returncode})")
    info: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("EDGEKD "):
            info = json.loads(line[len("EDGEKD "):])
    windows, overhead, classes = _read_counts(counts) if counts is not None and counts.is_file() else ([], 0, [])
    y = np.load(outputs) if outputs.suffix == ".npy" else np.fromfile(outputs, "<f4")
    return GuestRun(True, y, windows, overhead, _tail(text), info, classes=classes)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str) -> str:
    return log_tail(text, LOG_TAIL_LINES)


def _read_counts(path: Path) -> tuple[list[int], int, list[dict[str, int]]]:
    """Per-invoke counts and class counts minus the marker overhead (the smallest empty window, ids from
    EMPTY_WINDOWS). Reads insn_class.c's lines (``ID TOTAL C0 C1 ...`` after a ``classes`` header) and
    insn_window.c's (``ID TOTAL``)."""
    names: list[str] = []
    invokes: dict[int, list[int]] = {}
    empty: list[list[int]] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields[0] == "classes":
            names = fields[1:]
            continue
        if fields[0] == "total":
            continue
        values = [int(v) for v in fields[1:]]
        if int(fields[0]) >= EMPTY_WINDOWS:
            empty.append(values)
        else:
            invokes[int(fields[0])] = values
    base = min(empty, key=lambda v: v[0]) if empty else None
    totals, classes = [], []
    for _, values in sorted(invokes.items()):
        net = [max(v - b, 0) for v, b in zip(values, base, strict=True)] if base else values
        totals.append(net[0])
        if names:
            classes.append({"total": net[0], **dict(zip(names, net[1:], strict=True))})
    return totals, (base[0] if base else 0), classes


def _compare(host: np.ndarray, emu: np.ndarray, integer: bool) -> dict[str, Any]:
    if integer:
        diff = np.abs(host.astype(np.int32) - emu.astype(np.int32))
        return {"bit_exact_vs_host": bool(diff.max(initial=0) == 0), "max_diff_vs_host": float(diff.max(initial=0)),
                "mismatched_outputs": int((diff != 0).sum()), "mismatched_samples": int((diff != 0).any(1).sum())}
    diff = np.abs(host.astype(np.float64) - emu.astype(np.float64))
    return {"bit_exact_vs_host": None, "max_diff_vs_host": float(diff.max(initial=0.0)),
            "exactly_equal": bool((diff == 0).all())}


@dataclass
class CountedTime:
    """The counted time of one steady invoke: instructions, class counts, and the cycle model's figures."""

    instructions: int
    classes: dict[str, int]
    ms: float  # one thread, the profile's clock
    threads: int  # the profile's cores
    threads_ms: float | None  # on all of them ((t1 - S) / N + S), when the operator count is known
    cpi: float  # effective cycles per counted instruction
    busiest: str  # the busiest pipe group (or issue)
    source: str  # what is modelled, in one line

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cpi_source": self.source, "instruction_classes": self.classes,
                               "busiest_pipe_group": self.busiest}
        if self.threads_ms is not None:
            out[f"counted_ms_{self.threads}_threads"] = round(self.threads_ms, 4)
        return out


def counted_time(run: GuestRun, cpu: str, target: Target, operators: int | None) -> CountedTime | None:
    """The median steady invoke (the first, XNNPACK's one-time set-up, dropped) timed by the class model
    (:mod:`edgekd.emulate.timing_a`) at the profile's clock; the N-thread figure needs the operator count."""
    if not run.instructions or not run.classes:
        return None
    steady = run.classes[1:] or run.classes
    median = sorted(steady, key=lambda c: c["total"])[len(steady) // 2]
    threads, mhz = target.cpu.count, target.cpu.clock_mhz
    pred = timing_a.predict(median, cpu, mhz, threads, operators or 0)
    table = timing_a.timing_for(cpu)
    core = target.cpu.core
    runs_as = f"{core} runs as qemu {cpu} and is timed as the {pred.core}; " if core != pred.core else ""
    source = (f"edgekd.emulate.timing_a: {runs_as}instruction classes x pipe occupancy from the {table.source} "
              f"(busiest: {pred.busiest}) x factor {pred.factor:.3f} fitted on MobileNet v1 "
              f"(docs/cpi_calibration.json); 1 thread")
    multi = timing_a.threads_ms(pred.single_thread_ms, threads, operators, mhz) if operators else None
    return CountedTime(median["total"], median, pred.single_thread_ms, threads, multi, round(pred.cpi, 4),
                       pred.busiest, source)


def run_litert_script(model: Path, x: np.ndarray, kernels: str, work: Path, timeout: float,
                      emulated: tuple[Root, Path, str] | None = None, count: bool = True) -> GuestRun:
    """Run ``model`` on prepared inputs ``x`` with one thread, on the host (``emulated`` None) or under QEMU."""
    tag = f"{model.stem}.{kernels}.{'qemu' if emulated else 'host'}"
    script, inputs, outputs = work / "litert_runner.py", work / f"{tag}.x.npy", work / f"{tag}.y.npy"
    script.write_text(_LITERT_RUNNER)
    np.save(inputs, x)
    argv = [str(script), str(model), str(inputs), str(outputs), kernels, "1"]
    if emulated is None:
        try:
            proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise EdgekdError(f"{model}: the host LiteRT run timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise EdgekdError(f"{model}: the host LiteRT run failed: {_tail(proc.stderr)}")
        return GuestRun(True, np.load(outputs), [], 0, _tail(proc.stderr), {})
    root, view, cpu = emulated
    counts = work / f"{tag}.counts" if count else None
    return run_guest(root, view, cpu, [str(root.path / "usr" / "bin" / "python3.11"), *argv], outputs, counts,
                     timeout)


def _litert_runs(req: EmulationRequest, root: Root, view: Path, cpu: str, core: Core, art: dict[str, Any],
                 work: Path) -> list[EmulatedRun]:
    """One run per kernel set: reference kernels (int8 only) and the default XNNPACK delegate."""
    model = req.build_dir / art["path"]
    details = art["details"]
    x = model_inputs(req.x, details)
    integer = details["output"]["dtype"] != "float32"
    runs = []
    for kernels in (["reference", "xnnpack"] if integer else ["xnnpack"]):
        log.info("emulating %s (LiteRT, %s kernels) on qemu-aarch64 -cpu %s: %d samples", model.name, kernels, cpu,
                 len(x))
        host = run_litert_script(model, x, kernels, work, req.timeout_s)
        g = run_litert_script(model, x, kernels, work, req.timeout_s, (root, view, cpu), req.count)
        runs.append(_result(req, art, "litert", kernels, cpu, core, g, host.outputs, integer, details["output"],
                            expect_delegate=kernels == "xnnpack"))
    return runs


def _pte_runs(req: EmulationRequest, root: Root, view: Path, cpu: str, core: Core, art: dict[str, Any],
              work: Path) -> list[EmulatedRun]:
    from edgekd.verify.executorch import run_pte

    model = req.build_dir / art["path"]
    x = np.ascontiguousarray(req.x.astype("<f4"))
    inputs, emu_out = work / f"{model.stem}.x.f32", work / f"{model.stem}.qemu.f32"
    x.tofile(inputs)
    log.info("emulating %s (ExecuTorch, XNNPACK) on qemu-aarch64 -cpu %s: %d samples", model.name, cpu, len(x))
    host = run_pte(model, req.x)
    counts = work / f"{model.stem}.pte.counts"
    g = run_guest(root, view, cpu, [str(root.pte_runner), str(model), str(inputs), str(emu_out), str(len(x)), "1",
                                   "1", *map(str, x.shape[1:])], emu_out, counts if req.count else None, req.timeout_s)
    if g.ok and g.outputs is not None:
        g.outputs = g.outputs.reshape(len(x), -1)
    return [_result(req, art, "executorch", "xnnpack", cpu, core, g, host.reshape(len(x), -1), False, None,
                    expect_delegate=False)]


def _result(req: EmulationRequest, art: dict[str, Any], runtime: str, kernels: str, cpu: str, core: Core,
            g: GuestRun, host: np.ndarray, integer: bool, out_q: dict[str, Any] | None,
            expect_delegate: bool) -> EmulatedRun:
    run = EmulatedRun(emulator=f"qemu-aarch64/{cpu}", format=art["format"], precision=art["precision"],
                      runtime=runtime, kernels=kernels, path=art["path"], samples=len(req.y), ok=g.ok,
                      threads=1, error=g.error, log_tail=g.log or None)
    if not g.ok or g.outputs is None:
        return run
    emu = g.outputs
    if out_q is not None and integer:
        emu_f = (emu.astype(np.float32) - out_q["zero_point"]) * out_q["scale"]
        host_f = (host.astype(np.float32) - out_q["zero_point"]) * out_q["scale"]
    else:
        emu_f, host_f = emu, host
    cmp = _compare(host, emu, integer)
    run.bit_exact_vs_host, run.max_diff_vs_host = cmp.pop("bit_exact_vs_host"), cmp.pop("max_diff_vs_host")
    if run.bit_exact_vs_host is None and art["precision"] == "int8":
        run.bit_exact_vs_host = cmp["exactly_equal"]  # an int8 graph with float I/O: exact or not, still
    run.accuracy = float((emu_f.argmax(1) == req.y).mean())
    run.host_accuracy = float((host_f.argmax(1) == req.y).mean())
    run.agreement = float((emu_f.argmax(1) == host_f.argmax(1)).mean())
    ops = art["details"].get("ops") if art["format"] == "tflite" else None
    counted = counted_time(g, cpu, req.target, sum(ops.values()) if isinstance(ops, dict) else None)
    run.details = {**cmp, "marker_overhead_instructions": g.overhead, "counted_invokes": len(g.instructions),
                   "diff_unit": "int8 steps" if integer else "absolute"}
    if counted is not None:
        run.instructions, run.counted_ms, run.cpi = counted.instructions, counted.ms, counted.cpi
        run.details |= counted.details()
    if runtime == "litert":
        run.details["xnnpack_delegate"] = bool(g.info.get("delegated"))
        if expect_delegate and not g.info.get("delegated"):
            run.ok, run.error = False, "XNNPACK was not applied under emulation (check the stand-in /sys, /proc)"
    return run


@register_emulator("qemu-aarch64")
def emulate_aarch64(req: EmulationRequest) -> list[EmulatedRun]:
    """Every .tflite and .pte of the build, on the profile's core, against the same runtime on the host."""
    from edgekd.export.student import load_export

    cpu, core = core_of(req.target)
    require_tool("qemu-aarch64", "qemu-user")
    root = provision()
    view = stand_in_root(root, req.target)
    if req.count and root.plugin is None:
        log.warning("instruction counting is off: QEMU's qemu-plugin.h was not found (scripts/install_emulators.sh "
                    "installs it)")
    artifacts = load_export(req.build_dir).artifacts
    runs: list[EmulatedRun] = []
    with tempfile.TemporaryDirectory(prefix="edgekd-qemu-", dir=req.work_dir) as tmp:
        for art in artifacts:
            art = asdict(art)
            if art["format"] == "tflite":
                runs += _litert_runs(req, root, view, cpu, core, art, Path(tmp))
            elif art["format"] == "pte":
                runs += _pte_runs(req, root, view, cpu, core, art, Path(tmp))
    return runs
