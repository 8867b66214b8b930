"""Counted latency of a text student's artifacts on the target's emulated core (``edgekd build`` with an emulator).

The image builds count their artifacts on the emulated core; a text build does the same with its own inputs:
the int8 token rows of real held-out sentences (the table rows the device copies), not random tensors.

* Cortex-A targets (phones, Pis): ``student.tflite`` on LiteRT under ``qemu-aarch64`` as the profile's core with
  edgekd's instruction-class plugin, timed by :mod:`edgekd.emulate.timing_a` at the profile's clock (the same
  path as the image builds' emulated runs and ``scripts/bench_text.py --count``); outputs compared with the
  same kernels on the host.
* Microcontrollers that run edgekd's C (the M4/M7 boards): the generated model C (``c/model.c`` +
  ``kernels.c``) linked into the profile's budgets by :func:`edgekd.codegen.board.build_board` and one invoke
  counted under unicorn and charged by :mod:`edgekd.emulate.timing_m`'s per-class cycle model (the image builds'
  :func:`edgekd.emulate.cortex_m.count_invoke`). The C tokenizer and the row copy are not in that firmware (the
  board layer links only the model), so they are not in the figure; they are a few hundred instructions per word
  against millions for the model.

Either figure is *counted* by a model of the core, never measured on a device.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.targets import Target

#: Held-out sentences counted per build (the figure is their median steady invoke on Cortex-A, the first on C).
SENTENCES = 3


def _rows(folder: Path, texts: list[str]) -> np.ndarray:
    """(N, 1, L, E) int8 inputs of ``texts`` through the folder's own tokenizer and table."""
    from edgekd.text.export import int8_rows
    from edgekd.text.tokenize import load_tokenizer

    meta = json.loads((folder / "token_table.json").read_text())
    table = np.frombuffer((folder / "token_table.bin").read_bytes(), dtype=np.int8).reshape(meta["rows"], -1)
    return int8_rows(table, load_tokenizer(folder).encode(texts))


def count_cortex_a(folder: Path, target: Target, texts: list[str], kernels: str = "xnnpack",
                   timeout: float = 900.0) -> dict[str, Any]:
    """``folder/student.tflite`` on ``texts``' token rows under qemu-aarch64 as ``target``'s core (one thread),
    against the same kernels on the host; the counted time of the median steady invoke."""
    from edgekd.emulate.aarch64 import core_of, counted_time, provision, run_litert_script, stand_in_root
    from edgekd.export.tflite import inspect_tflite

    model = folder / "student.tflite"
    x = _rows(folder, texts)
    root = provision()
    view = stand_in_root(root, target)
    cpu, _ = core_of(target)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekd-text-count-") as tmp:
        host = run_litert_script(model, x, kernels, Path(tmp), timeout)
        emu = run_litert_script(model, x, kernels, Path(tmp), timeout, (root, view, cpu))
    if not emu.ok or emu.outputs is None or host.outputs is None:
        raise EdgekdError(f"{model} on the emulated {cpu} ({kernels}) failed: {emu.error or host.error}")
    timing = counted_time(emu, cpu, target, len(inspect_tflite(model).ops))
    if timing is None:
        raise EdgekdError(f"{model} on the emulated {cpu}: the instruction-class plugin wrote no counts; "
                          "scripts/install_emulators.sh builds it")
    diff = int(np.abs(emu.outputs.astype(np.int32) - host.outputs.astype(np.int32)).max())
    return {"ms": round(timing.ms, 4), "threads_ms": round(timing.threads_ms, 4) if timing.threads_ms else None,
            "threads": timing.threads, "instructions": timing.instructions, "cycles": None,
            "sentences": len(texts), "runtime": f"litert-{kernels}", "emulator": f"qemu-aarch64 -cpu {cpu}",
            "max_step_diff_vs_host": diff, "bit_exact_vs_host": diff == 0,
            "method": f"student.tflite ({kernels} kernels, 1 thread) on the int8 token rows of {len(texts)} held-out "
                      f"sentences under qemu-aarch64 as {cpu} with edgekd's instruction-class plugin; median steady "
                      f"invoke; {timing.source}; counted, not measured",
            "wall_s": round(time.perf_counter() - start, 1)}


def count_mcu_c(folder: Path, target: Target, texts: list[str], timeout: float = 900.0) -> dict[str, Any]:
    """The generated model C in ``folder/c`` linked for ``target`` (a copy: the board layer writes its sources
    beside the model) and one invoke on the first sentence's token rows counted under unicorn (the M4/M7 cycle
    model where the core has one, else instructions x the core's CPI)."""
    from edgekd.codegen.board import build_board
    from edgekd.emulate.cortex_m import count_invoke

    start = time.perf_counter()
    x = _rows(folder, texts[:1])[0]
    out_size = len(json.loads((folder / "vectors.json").read_text())["vectors"][0]["int8_embedding"])
    with tempfile.TemporaryDirectory(prefix="edgekd-text-board-") as tmp:
        src = Path(tmp) / "c"
        shutil.copytree(folder / "c", src)
        board = build_board(src, target)
        counted = count_invoke(board, target, x, out_size, timeout)
        flash, ram = board.flash_bytes, board.ram_bytes
    if counted.ms is None:
        raise EdgekdError(f"{target.name}: the generated C was not counted ({counted.note})")
    how = counted.cycle_model or f"instructions x CPI {counted.cpi} ({counted.cpi_source})"
    return {"ms": round(counted.ms, 4), "threads_ms": None, "threads": 1, "instructions": counted.instructions,
            "cycles": counted.cycles, "sentences": 1, "runtime": "edgekd-c",
            "emulator": f"{counted.counter}, {target.cpu.core} at {target.cpu.clock_mhz:g} MHz",
            "firmware_flash_bytes": flash, "firmware_ram_bytes": ram, "max_step_diff_vs_host": None,
            "bit_exact_vs_host": None,
            "method": f"edgekd's generated C (c/model.c, kernels.c) linked into {target.name}'s budgets, one invoke "
                      f"on the int8 token rows of a held-out sentence counted by {counted.counter}; {how}; the C "
                      "tokenizer and row copy are not in the firmware; counted, not measured",
            "wall_s": round(time.perf_counter() - start, 1)}


def count_text_artifacts(folder: Path, target: Target, texts: list[str], ships_c: bool) -> dict[str, Any]:
    """The counted latency per sentence of a text build's artifacts on ``target``'s emulated core."""
    if target.is_mcu:
        if not ships_c:
            raise EdgekdError(f"{target.name}: counting a text student needs edgekd's generated C (the 'c' format)")
        return count_mcu_c(folder, target, texts[:SENTENCES])
    return count_cortex_a(folder, target, texts[:SENTENCES])
