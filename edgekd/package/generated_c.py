"""Generated C in a bundle: edgekd's C inference code and the firmware ELF of every board it was emulated on.

On microcontrollers ``verify --emulator qemu`` writes ``c/`` (the Cortex-M emulator's output, recorded in
verify.json's passed emulated runs); the bundle ships those sources and ELFs. ``package verify`` never compiles or
runs them: it regenerates the sources from the bundle's own int8 .tflite, requires byte-identical files, and
compiles and runs *its regenerated copy* with the host gcc against the int8 vectors.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.formats.base import Bundle, VectorCheck
from edgekd.package.vectors import guarded, int8_tflite, require_identical
from edgekd.verify.records import VerifyRecord

log = logging.getLogger(__name__)

# Generated-C build products that are not shipped: the host test binary and the linker map (absolute paths).
C_SKIP_SUFFIXES = (".map",)
C_SKIP_NAMES = ("host_runner",)


def collect(build: Path, verify: VerifyRecord) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The generated C sources and each board's ELF, from the emulated runs verify.json records as passed and
    bit-exact with TFLite Micro: C that disagrees with its own .tflite would fail the bundle's vectors."""
    files: dict[str, bytes] = {}
    boards = []
    for r in verify.emulated:
        if r.format != "c" or not r.ok:
            continue
        if r.bit_exact_vs_host is not True:
            log.warning("not bundling the generated C of %s: it was not bit-exact with TFLite Micro on %s",
                        r.path, r.emulator)
            continue
        d = r.details
        src = build / d["source_dir"]
        if not src.is_dir():
            raise EdgekdError(f"{src}: the generated C that verify.json records is gone; re-run `edgekd verify "
                              f"--target {verify.target} {build} --emulator qemu`")
        for path in sorted(src.iterdir()):
            if path.is_file() and path.suffix not in C_SKIP_SUFFIXES and path.name not in C_SKIP_NAMES:
                files[f"{d['source_dir']}/{path.name}"] = path.read_bytes()
        boards.append({"elf": r.path, "emulator": r.emulator, "core": d.get("core"),
                       "bit_exact_vs_host": r.bit_exact_vs_host, "flash_bytes": d.get("flash_bytes"),
                       "ram_bytes": d.get("ram_bytes"), "arena_bytes": d.get("arena_bytes"),
                       "stack_bytes": d.get("stack_bytes"), "tflm_arena_bytes": d.get("tflm_arena_bytes"),
                       "instructions": r.instructions, "counted_ms": r.counted_ms, "cpi": r.cpi,
                       # what the board sources (linker script) were written with, so verify can regenerate them
                       "machine": r.emulator.split("/", 1)[-1],
                       "flash_budget_bytes": d.get("flash_budget_bytes"), "ram_budget_bytes": d.get("ram_budget_bytes"),
                       "stack_reserved_bytes": d.get("stack_reserved_bytes")})
    return files, boards


def manifest_section(files: dict[str, bytes], boards: list[dict[str, Any]]) -> dict[str, Any]:
    return {"api": "model.h: int edgekd_invoke(const int8_t *input, int8_t *output); input/output quantization "
                   "macros; same int8 input and output as the .tflite",
            "sources": sorted(n for n in files if not n.endswith(".elf")), "boards": boards,
            "regenerate": "edgekd.codegen.generate_c(<int8 .tflite>) and the board layer of "
                          "edgekd.emulate.cortex_m.write_board_sources; `package verify` compares them byte for byte"}


def _board_layer(bundle: Bundle, board: dict[str, Any], folder: str) -> SimpleNamespace:
    """What write_board_sources needs (name, budgets, QEMU machine), from the manifest's board entry."""
    from edgekd.codegen.board import TESTIO_ORIGIN
    from edgekd.package.manifest import _Shape

    s = _Shape(bundle.path)
    elf = PurePosixPath(board["elf"])
    if str(elf.parent) != folder or elf.suffix != ".elf" or not re.fullmatch(r"[A-Za-z0-9._-]+", elf.stem):
        raise s.error(f"generated_c board ELF {board['elf']!r} is not {folder}/<target>.elf")
    machine = board.get("machine") or board["emulator"].split("/", 1)[-1]
    if machine not in TESTIO_ORIGIN:
        raise s.error(f"generated_c board machine {machine!r} is not a board edgekd builds for "
                      f"({', '.join(TESTIO_ORIGIN)})")
    manifest = bundle.manifest
    budgets = manifest.get("budgets") if isinstance(manifest.get("budgets"), dict) else {}
    merged = {"flash_budget_bytes": budgets.get("flash_bytes"), "ram_budget_bytes": budgets.get("ram_bytes"),
              "stack_reserved_bytes": 1024} | {k: v for k, v in board.items() if v is not None}
    flash = s.count(merged, "flash_budget_bytes", "generated_c.boards[].")
    ram = s.count(merged, "ram_budget_bytes", "generated_c.boards[].")
    stack = s.count(merged, "stack_reserved_bytes", "generated_c.boards[].")
    return SimpleNamespace(name=elf.stem, budgets=SimpleNamespace(flash_bytes=flash, ram_bytes=ram),
                           emulator=SimpleNamespace(machine=machine), stack=stack)


def _regenerate(bundle: Bundle, tfl: dict[str, Any], model: Path, regen: Path) -> None:
    """Write edgekd's own C for ``model`` into ``regen`` as ``verify --emulator qemu`` wrote it, and require the
    bundle's generated C folder to hold exactly those files, byte for byte."""
    from edgekd.codegen import generate_c
    from edgekd.codegen.board import write_board_sources
    from edgekd.codegen.host import HARNESS
    from edgekd.package.manifest import _Shape

    gc = bundle.manifest["generated_c"]
    folders = {str(PurePosixPath(n).parent) for n in gc["sources"]}
    if len(folders) != 1 or "/" in next(iter(folders)) or next(iter(folders)) == ".":
        raise _Shape(bundle.path).error("generated_c.sources are not all in one folder")
    folder = folders.pop()
    guarded(bundle, tfl["path"], "edgekd's code generator", generate_c, model, regen)
    for board in gc["boards"]:
        layer = _board_layer(bundle, board, folder)
        write_board_sources(regen, layer, layer.stack)  # type: ignore[arg-type]  (name, budgets, machine)
    (regen / "host_main.c").write_text(HARNESS)
    expected = {f"{folder}/{path.name}": path.read_bytes() for path in sorted(regen.iterdir())}
    elfs = {b["elf"] for b in gc["boards"]}
    bundled = {n for n in bundle.files if n.startswith(f"{folder}/") and n not in elfs}
    for name in sorted((bundled | set(gc["sources"])) - set(expected)):
        raise EdgekdError(f"{bundle.path}: {name} is not a file edgekd generates from {tfl['path']}; the bundle was "
                          "modified")
    for name in sorted(set(expected) - bundled):
        raise EdgekdError(f"{bundle.path}: {name} is missing: edgekd generates it from {tfl['path']}; the bundle "
                          "is incomplete")
    require_identical(bundle, tfl["path"], expected)


def check(bundle: Bundle) -> VectorCheck | None:
    """Regenerate the bundle's generated C from its own int8 .tflite, require byte-identical sources, then
    compile and run edgekd's regenerated copy (never the bundle's) with the host gcc against the int8 vectors."""
    from edgekd.codegen import compile_host, run_host

    if "generated_c" not in bundle.manifest:
        return None
    tfl = int8_tflite(bundle)
    with tempfile.TemporaryDirectory(prefix="edgekd-package-c-") as tmp:
        model = Path(tmp) / PurePosixPath(tfl["path"]).name  # the name is in the generated banners
        model.write_bytes(bundle.files[tfl["path"]])
        regen = Path(tmp) / "c"
        _regenerate(bundle, tfl, model, regen)
        n = bundle.count
        stem = Path(tfl["path"]).stem
        want = np.frombuffer(bundle.files[f"vectors/expected_{stem}_int8.bin"], np.int8).reshape(n, -1)
        xq = np.frombuffer(bundle.files["vectors/input_int8.bin"], np.int8).reshape(n, -1)
        got = run_host(compile_host(regen, Path(tmp) / "runner"), xq, want.shape[1])
    diff = int(np.abs(got.reshape(want.shape).astype(int) - want.astype(int)).max())
    return VectorCheck("c/ (generated C, host gcc)", "edgekd-c", diff, "int8 steps", diff == 0,
                       f"regenerated from {tfl['path']} by edgekd, bundle sources byte-identical, run with host gcc",
                       "the bundle's own C sources and firmware ELFs")
