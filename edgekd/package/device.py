"""The ``device`` bundle layout: what runs a Raspberry Pi / phone bundle on the device itself.

For a bundle with models for a device runtime (a ``.pte``, or a ``.tflite`` for LiteRT):

- ``device/run_vectors.py``: checks every file against manifest.json, then the bundle's vectors through LiteRT
  (int8 byte for byte, LiteRT's reference kernels) and the ExecuTorch runner, on the device;
- ``device/example.py``: the smallest complete ai-edge-litert program (normalisation and quantization read from
  manifest.json); ``device/requirements.txt`` pins the versions edgekd verified with;
- ``device/executorch/``: the torch-free ExecuTorch runner (``pte_runner``, aarch64 Linux, with the ExecuTorch
  libraries it loads from ``lib/``), the very binary edgekd ran the ``.pte`` with under qemu-aarch64. It is
  shipped only when the build's verify ran it there and passed (it is cross-built by
  :mod:`edgekd.emulate.aarch64` from the executorch wheel). It cannot be rebuilt byte for byte on another machine,
  so ``package verify`` checks it by sha256 (and the signature) only; the scripts are regenerated and compared.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from edgekd.codegen.board import fill
from edgekd.errors import EdgekdError
from edgekd.package.layouts import Layout, LayoutFiles, LayoutInput, register_layout, safe, template

log = logging.getLogger(__name__)
RUNNER_DIR = "device/executorch"
RUNNER = f"{RUNNER_DIR}/pte_runner"
_SCRIPTS = ("run_vectors.py", "example.py")


def device_artifacts(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The artifacts a Linux device runs: .pte (ExecuTorch) and .tflite for LiteRT (not TFLite Micro)."""
    return [a for a in manifest.get("artifacts") or [] if isinstance(a, dict)
            and (a.get("format") == "pte" or (a.get("format") == "tflite" and a.get("runtime") == "litert"))]


def _needed(elf: bytes) -> list[str]:
    """DT_NEEDED names of an ELF (pyelftools; the runner's and its libraries')."""
    import io

    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    out: list[str] = []
    for sec in ELFFile(io.BytesIO(elf)).iter_sections():
        if isinstance(sec, DynamicSection):
            out += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    return out


def runner_files(pte_runner: Path) -> dict[str, bytes]:
    """The runner and the libraries of its ``lib/`` folder it loads (transitively), as bundle entries."""
    lib = pte_runner.parent / "lib"
    files = {RUNNER: pte_runner.read_bytes()}
    todo = _needed(files[RUNNER])
    while todo:
        name = todo.pop()
        entry = f"{RUNNER_DIR}/lib/{name}"
        if entry in files or not (lib / name).is_file():
            continue  # a system library (libc, libstdc++): the device's own
        files[entry] = (lib / name).read_bytes()
        todo += _needed(files[entry])
    return files


def _verified_runner(build: Path) -> tuple[dict[str, bytes], str]:
    """The runner verify ran the .pte with under qemu-aarch64, or no files and why not."""
    from edgekd.export.records import load_export
    from edgekd.verify.records import load_verify

    export = load_export(build)
    verify = load_verify(build, export.target)
    ran = [r for r in verify.emulated if r.runtime == "executorch" and r.ok and r.emulator.startswith("qemu-aarch64")]
    if not ran:
        return {}, ("not shipped: this build's verify did not run the .pte under qemu-aarch64 (build with "
                    "--emulator qemu to ship the runner it verified)")
    from edgekd.emulate.aarch64 import provision

    try:
        root = provision()
    except EdgekdError as exc:
        return {}, f"not shipped: the aarch64 root is not available here ({exc})"
    return runner_files(root.pte_runner), (f"the runner verify ran {ran[0].path} with under {ran[0].emulator}, "
                                           "cross-built by edgekd.emulate.aarch64 against the executorch wheel")


class Device(Layout):
    name = "device"
    folders = ("device/",)

    def applies(self, inp: LayoutInput) -> bool:
        return bool(device_artifacts(inp.manifest))

    def files(self, inp: LayoutInput) -> LayoutFiles:
        versions = inp.manifest.get("versions") or {}
        values = {"NAME": safe(str(inp.manifest.get("name"))), "LITERT": safe(str(versions.get("ai-edge-litert", ""))),
                  "NUMPY": safe(str(versions.get("numpy", "")))}
        regenerated = {f"device/{n}": template(f"device/{n}").encode() for n in _SCRIPTS}
        regenerated["device/requirements.txt"] = fill(template("device/requirements.txt"), values).encode()
        fixed: dict[str, bytes] = {}
        runner = "not shipped: the bundle has no .pte"
        if inp.build is not None and any(a["format"] == "pte" for a in device_artifacts(inp.manifest)):
            fixed, runner = _verified_runner(inp.build)
            if not fixed:
                log.warning("%s: ExecuTorch runner %s", inp.manifest.get("name"), runner)
        return LayoutFiles(regenerated, fixed, {
            "run_vectors": "python3 device/run_vectors.py: file hashes, then the vectors on LiteRT and ExecuTorch on "
                           "the device",
            "python_example": "device/example.py (ai-edge-litert; pip install -r device/requirements.txt)",
            "executorch_runner": (f"{RUNNER} MODEL.pte INPUTS.f32 OUTPUTS.f32 COUNT THREADS DIM... (aarch64 Linux; "
                                  f"libraries in {RUNNER_DIR}/lib)") if fixed else None,
            "executorch_runner_source": runner})

    def check_fixed(self, inp: LayoutInput, names: list[Any]) -> str | None:
        if not names:
            return None
        if not any(a["format"] == "pte" for a in device_artifacts(inp.manifest)):
            return "lists an ExecuTorch runner but the bundle has no .pte"
        bad = [n for n in names if not isinstance(n, str) or not (
            n == RUNNER or (PurePosixPath(n).parent == PurePosixPath(RUNNER_DIR, "lib") and n.endswith(".so")))]
        if bad or RUNNER not in names:
            return f"names files that are not the ExecuTorch runner and its libraries ({', '.join(map(str, bad))})"
        return None


register_layout(Device())
