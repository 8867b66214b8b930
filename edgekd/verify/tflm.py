"""TFLite Micro on the host: run a model and find the smallest tensor arena it accepts.

The tflite-micro interpreter refuses an arena that is too small, but it can also abort the whole process
("All temp buffers must be freed ..."), so every try runs in its own subprocess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError

_PROBE = r"""
import sys, json
import numpy as np
from tflite_micro import runtime
path, size = sys.argv[1], int(sys.argv[2])
it = runtime.Interpreter.from_bytes(open(path, 'rb').read(), arena_size=size)
d = it.get_input_details(0)
it.set_input(np.zeros(d['shape'], d['dtype']), 0)
it.invoke()
if len(sys.argv) > 3:
    it.print_allocations()
print('EDGEKD_OK')
"""


_RUN = r"""
import sys, time
import numpy as np
from tflite_micro import runtime
path, size, inputs, outputs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
it = runtime.Interpreter.from_bytes(open(path, 'rb').read(), arena_size=size)
x = np.load(inputs)
ys, ms = [], []
for row in x:
    it.set_input(row[None], 0)
    t = time.perf_counter()
    it.invoke()
    ms.append((time.perf_counter() - t) * 1e3)
    ys.append(it.get_output(0)[0].copy())
np.savez(outputs, y=np.stack(ys), ms=np.array(ms))
"""


@dataclass
class TflmRun:
    """Raw (quantized) outputs of the TFLite Micro interpreter and its per-invoke wall times."""

    outputs: np.ndarray
    invoke_ms: list[float]
    arena_bytes: int


def run_tflm(path: str | Path, x: np.ndarray, arena_bytes: int, timeout: float = 1800) -> TflmRun:
    """Run ``path`` on already-quantized, model-layout inputs ``x`` (N, *input shape without batch).

    Runs in a subprocess (TFLite Micro aborts the process on some allocation errors); an arena that is too
    small is an :class:`EdgekdError` naming the size.
    """
    with tempfile.TemporaryDirectory(prefix="edgekd-tflm-") as tmp:
        inputs, outputs = Path(tmp) / "x.npy", Path(tmp) / "y.npz"
        np.save(inputs, x)
        proc = subprocess.run([sys.executable, "-c", _RUN, str(path), str(arena_bytes), str(inputs), str(outputs)],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not outputs.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            raise EdgekdError(f"{path}: TFLite Micro failed with a {arena_bytes}-byte arena: "
                              f"{tail[-1] if tail else 'exit code ' + str(proc.returncode)}")
        data = np.load(outputs)
        return TflmRun(data["y"], [float(v) for v in data["ms"]], arena_bytes)


@dataclass
class ArenaMeasurement:
    """Minimum arena TFLite Micro accepted, and its split as the allocator recorded it (host, 64-bit)."""

    min_arena_bytes: int
    head_bytes: int
    tail_bytes: int
    breakdown: dict[str, int]
    tries: int

    def to_dict(self) -> dict[str, object]:
        return self.__dict__.copy()


def _try(path: Path, size: int, record: bool = False) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-c", _PROBE, str(path), str(size)] + (["record"] if record else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def arena_fits(path: str | Path, size: int) -> bool:
    """Whether TFLite Micro builds and invokes the model with an arena of ``size`` bytes."""
    result = _try(Path(path), size)
    return result.returncode == 0 and "EDGEKD_OK" in result.stdout


def min_arena(path: str | Path, upper: int = 8 << 20, granularity: int = 16) -> ArenaMeasurement:
    """Binary-search the smallest arena (to ``granularity`` bytes) that runs ``path``; one subprocess a try."""
    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: no such .tflite file")
    tries = 1
    if not arena_fits(path, upper):
        err = _try(path, upper).stderr.strip().splitlines()
        raise EdgekdError(f"{path}: TFLite Micro cannot run this model even with {upper} bytes of arena: "
                          f"{err[-1] if err else 'unknown error'}")
    lo, hi = 0, upper // granularity
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        tries += 1
        if arena_fits(path, mid * granularity):
            hi = mid
        else:
            lo = mid
    size = hi * granularity
    record = _try(path, size, record=True)
    text = record.stdout + record.stderr
    breakdown = {name: int(used) for name, used in re.findall(r"'([^']+)' used (\d+) bytes", text)}
    head = re.search(r"allocation head (\d+)", text)
    tail = re.search(r"allocation tail (\d+)", text)
    return ArenaMeasurement(size, int(head.group(1)) if head else -1, int(tail.group(1)) if tail else -1,
                            breakdown, tries)


def main() -> None:  # python -m edgekd.verify.tflm MODEL.tflite
    print(json.dumps(min_arena(sys.argv[1]).to_dict(), indent=2))


if __name__ == "__main__":
    main()
