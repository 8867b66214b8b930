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
  :func:`edgekd.emulate.cortex_m.count_invoke`). The device's whole path is counted too: a second firmware
  whose ``edgekd_invoke`` takes the sentence's text, runs the C tokenizer and the table-row copy
  (``edgekd_tokenizer.c``, ``edgekd_token_table.c``) and then the model (the generated ``model.c`` with its entry
  renamed), and a third with the tokenizer and row copy alone. The figure is the whole path; the model alone
  and the tokenizer + rows alone are reported beside it. The board layer links ``model.c`` and ``kernels.c``,
  so the counting firmwares are a ``model.c`` that includes the generated sources (:data:`_PIPELINE`).

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


#: ``model.c`` of the counting firmwares: the text in (NUL-terminated, in the harness' input buffer), the C
#: tokenizer, the row copy, then the generated model under another name (@MODEL@: its call, or 0 for the
#: tokenizer and rows alone). The board layer compiles ``model.c`` and ``kernels.c``; this file includes the rest.
_PIPELINE = """/* Written by edgekd.text.latency to count a text student's whole path on the device; not shipped. */
#include "model.h"
#include "edgekd_tokenizer.h"

int edgekd_model_invoke(const int8_t *input, int8_t *output);
int8_t edgekd_text_rows[EDGEKD_TOKENIZER_MAX_LEN * EDGEKD_TOKEN_TABLE_WIDTH];
@INCLUDE_MODEL@#include "edgekd_tokenizer.c"
#include "edgekd_token_table.c"

int edgekd_invoke(const int8_t *input, int8_t *output) {
  int32_t ids[EDGEKD_TOKENIZER_MAX_LEN];
  (void)output;
  edgekd_tokenize((const char *)input, ids);
  edgekd_token_rows(ids, edgekd_text_rows);
  return @MODEL@;
}
"""
_WITH_MODEL = "#define edgekd_invoke edgekd_model_invoke\n#include \"edgekd_model.c\"\n#undef edgekd_invoke\n"


def _count_board(src: Path, target: Target, x: np.ndarray, out_size: int, timeout: float) -> tuple[Any, Any]:
    """Link ``src`` into ``target``'s budgets and count one invoke of ``x``: (the count, the firmware)."""
    from edgekd.codegen.board import build_board
    from edgekd.emulate.cortex_m import count_invoke

    board = build_board(src, target)
    counted = count_invoke(board, target, x, out_size, timeout)
    if counted.ms is None:
        raise EdgekdError(f"{target.name}: the generated C was not counted ({counted.note})")
    return counted, board


def _text_input(text: str, size: int) -> np.ndarray:
    """The harness' input buffer holding ``text`` as the C tokenizer reads it: bytes, NUL-terminated."""
    raw = text.encode("utf-8")[: size - 1]
    buf = np.zeros(size, dtype=np.int8)
    buf[: len(raw)] = np.frombuffer(raw, dtype=np.int8)
    return buf


def count_mcu_c(folder: Path, target: Target, texts: list[str], timeout: float = 900.0) -> dict[str, Any]:
    """One held-out sentence on ``target``'s emulated core (unicorn: the M4/M7 cycle model where the core has one,
    else instructions x the core's CPI) through three firmwares linked into its budgets from copies of
    ``folder/c``: the generated model on the sentence's int8 token rows; the whole path from the sentence's
    text (C tokenizer, row copy, model); the tokenizer and row copy alone. ``ms`` is the whole path."""
    start = time.perf_counter()
    text = texts[0]
    x = _rows(folder, [text])[0]
    out_size = len(json.loads((folder / "vectors.json").read_text())["vectors"][0]["int8_embedding"])
    parts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgekd-text-board-") as tmp:
        for part, model in (("model", None), ("pipeline", "edgekd_model_invoke(edgekd_text_rows, output)"),
                            ("tokenizer_rows", "0")):
            src = Path(tmp) / part
            shutil.copytree(folder / "c", src)
            sample = x
            if model is not None:
                (src / "model.c").rename(src / "edgekd_model.c")
                (src / "model.c").write_text(_PIPELINE.replace("@INCLUDE_MODEL@", _WITH_MODEL if part == "pipeline"
                                                               else "").replace("@MODEL@", model))
                sample = _text_input(text, int(x.size))
            counted, board = _count_board(src, target, sample, out_size, timeout)
            parts[part] = {"ms": round(counted.ms, 4), "cycles": counted.cycles, "instructions": counted.instructions,
                           "firmware_flash_bytes": board.flash_bytes, "firmware_ram_bytes": board.ram_bytes}
    how = counted.cycle_model or f"instructions x CPI {counted.cpi} ({counted.cpi_source})"
    whole, model_only, tok = parts["pipeline"], parts["model"], parts["tokenizer_rows"]
    return {"ms": whole["ms"], "threads_ms": None, "threads": 1, "instructions": whole["instructions"],
            "cycles": whole["cycles"], "sentences": 1, "runtime": "edgekd-c",
            "emulator": f"{counted.counter}, {target.cpu.core} at {target.cpu.clock_mhz:g} MHz",
            "firmware_flash_bytes": whole["firmware_flash_bytes"], "firmware_ram_bytes": whole["firmware_ram_bytes"],
            "model_ms": model_only["ms"], "tokenizer_rows_ms": tok["ms"], "parts": parts,
            "sentence": {"characters": len(text), "words": int((_rows_ids(folder, text) > 0).sum())},
            "max_step_diff_vs_host": None, "bit_exact_vs_host": None,
            "method": f"edgekd's generated C linked into {target.name}'s budgets, one held-out sentence counted by "
                      f"{counted.counter}; {how}; the whole path (text -> C tokenizer -> table-row copy -> model "
                      f"c/model.c + kernels.c) {whole['ms']:.3f} ms; as their own firmwares, the model alone on "
                      f"the sentence's token rows {model_only['ms']:.3f} ms and the tokenizer and row copy alone "
                      f"{tok['ms']:.3f} ms ({len(text)} characters); counted, not measured",
            "wall_s": round(time.perf_counter() - start, 1)}


def _rows_ids(folder: Path, text: str) -> np.ndarray:
    from edgekd.text.tokenize import load_tokenizer

    return load_tokenizer(folder).encode([text])[0]


def count_text_artifacts(folder: Path, target: Target, texts: list[str], ships_c: bool) -> dict[str, Any]:
    """The counted latency per sentence of a text build's artifacts on ``target``'s emulated core."""
    if target.is_mcu:
        if not ships_c:
            raise EdgekdError(f"{target.name}: counting a text student needs edgekd's generated C (the 'c' format)")
        return count_mcu_c(folder, target, texts[:SENTENCES])
    return count_cortex_a(folder, target, texts[:SENTENCES])
