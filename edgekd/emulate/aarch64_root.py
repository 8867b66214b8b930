"""The arm64 guest root that :mod:`edgekd.emulate.aarch64` runs in: provisioned once per runtime versions, and
a view of it per target core whose ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` describe that core.

Kept apart from the runs because it is the only part that installs anything (mmdebstrap, pip's aarch64 wheels,
the cross-built ExecuTorch runner); bundles (:mod:`edgekd.package.device`) and ``edgekd latency`` use it too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekd.cores import Core, aarch64_cores
from edgekd.emulate import cache_dir, require_tool
from edgekd.emulate.qemu_plugin import NATIVE, build_plugin
from edgekd.errors import EdgekdError
from edgekd.logs import log
from edgekd.targets import Target

#: The cores this emulator stands in for (MIDR, /proc/cpuinfo features): :mod:`edgekd.cores`; their timing: timing_a.
CORES: dict[str, Core] = aarch64_cores()


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


__all__ = ["CORES", "Root", "core_of", "provision", "stand_in_root"]
