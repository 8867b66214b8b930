"""``edgekd codegen``: generate the C for a .tflite, prove it matches TFLite Micro, and (optionally) link it
for a board, without a whole build."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.codegen.emit import generate_c
from edgekd.codegen.host import compile_host, run_host
from edgekd.targets import Target


def codegen_model(tflite: str | Path, out_dir: str | Path, target: Target | str | None = None,
                  check: int = 64, seed: int = 0, small: bool = False) -> dict[str, Any]:
    """Write C for ``tflite`` into ``out_dir`` (``small``: kernels for flash over speed, see generate_c);
    compare ``check`` seeded random inputs with TFLite Micro on the host gcc build; with ``target``, link the
    firmware into that profile's budgets (an overrun is an error naming the region and the bytes) and report its
    flash and RAM."""
    from edgekd.verify.tflm import min_arena, run_tflm

    gen = generate_c(tflite, out_dir, small=small)
    tflm_arena = min_arena(tflite).min_arena_bytes
    result: dict[str, Any] = {"model": str(tflite), "out": str(out_dir), "files": [p.name for p in gen.files],
                              "ops": gen.ops, "macs": gen.macs, "arena_bytes": gen.arena_bytes,
                              "const_bytes": gen.const_bytes, "tflm_arena_bytes": tflm_arena,
                              "arena_vs_tflm": round(gen.arena_bytes / tflm_arena, 3), "small": small, "check": None,
                              "board": None}
    if check:
        x = np.random.default_rng(seed).integers(-128, 128, size=(check, *gen.input_shape[1:]), dtype=np.int8)
        with tempfile.TemporaryDirectory(prefix="edgekd-codegen-") as tmp:
            ours = run_host(compile_host(out_dir, Path(tmp) / "runner"), x, gen.output_size)
        ref = run_tflm(tflite, x, max(tflm_arena, 1 << 16) * 2).outputs.reshape(check, -1)
        diff = np.abs(ours.astype(np.int32) - ref.astype(np.int32))
        result["check"] = {"samples": check, "inputs": f"uniform random int8, seed {seed}",
                           "bit_exact_vs_tflm": bool(diff.max(initial=0) == 0), "max_diff": int(diff.max(initial=0)),
                           "mismatched_outputs": int((diff != 0).sum())}
    if target is not None:
        from edgekd.codegen.board import build_board
        from edgekd.targets import load_target

        target = load_target(target) if isinstance(target, str) else target
        board = build_board(out_dir, target)
        result["board"] = {"target": target.name, "core": board.core, "machine": board.board,
                           "elf": str(board.elf), "flash_bytes": board.flash_bytes, "ram_bytes": board.ram_bytes,
                           "stack_reserved_bytes": board.stack_bytes,
                           "flash_budget_bytes": target.budgets.flash_bytes,
                           "ram_budget_bytes": target.budgets.ram_bytes}
    return result


def codegen_text(result: dict[str, Any]) -> str:
    """`edgekd codegen`: the files, the memory plan against TFLite Micro's, the check, the board link."""
    lines = [f"wrote {result['out']}/: {', '.join(result['files'])}",
             f"{len(result['ops'])} operators, {result['macs']:,} MACs; constants {result['const_bytes']:,} B "
             f"(flash); activation arena {result['arena_bytes']:,} B vs TFLite Micro's minimum arena "
             f"{result['tflm_arena_bytes']:,} B ({result['arena_vs_tflm']:.2f}x)"]
    c, b = result["check"], result["board"]
    if c:
        lines.append(f"host gcc vs TFLite Micro on {c['samples']} random inputs: "
                     + ("bit-exact" if c["bit_exact_vs_tflm"] else f"{c['mismatched_outputs']} bytes differ"))
    if b:
        lines.append(f"{b['target']} ({b['core']}): {b['elf']}: flash {b['flash_bytes']:,} of "
                     f"{b['flash_budget_bytes']:,} B, RAM {b['ram_bytes']:,} of {b['ram_budget_bytes']:,} B "
                     f"(data + bss + {b['stack_reserved_bytes']:,} B stack)")
    return "\n".join(lines)
