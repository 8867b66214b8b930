"""Build the generated C with the host's gcc and run it on a batch of int8 inputs.

The harness reads N inputs from a binary file, invokes the model on each, and writes N outputs, so one process
runs the whole batch. This is the reference the emulated microcontroller runs are compared with.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.export.core import atomic_path

CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")

HARNESS = r"""/* Host harness: host_runner IN.bin OUT.bin N */
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

int main(int argc, char **argv) {
  static int8_t x[EDGEKD_INPUT_SIZE], y[EDGEKD_OUTPUT_SIZE];
  FILE *in, *out;
  long n, i;
  if (argc != 4) { fprintf(stderr, "usage: %s IN.bin OUT.bin N\n", argv[0]); return 2; }
  in = fopen(argv[1], "rb");
  out = fopen(argv[2], "wb");
  n = strtol(argv[3], NULL, 10);
  if (!in || !out) { fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]); return 2; }
  for (i = 0; i < n; ++i) {
    if (fread(x, 1, sizeof x, in) != sizeof x) { fprintf(stderr, "short input at sample %ld\n", i); return 3; }
    if (edgekd_invoke(x, y) != 0) { fprintf(stderr, "invoke failed at sample %ld\n", i); return 4; }
    if (fwrite(y, 1, sizeof y, out) != sizeof y) { fprintf(stderr, "write failed\n"); return 5; }
  }
  fclose(in);
  return fclose(out) == 0 ? 0 : 5;
}
"""


def compile_host(src_dir: str | Path, exe: str | Path | None = None) -> Path:
    """Compile ``src_dir``'s generated model with gcc (``-std=c99 -O2 -Wall -Wextra -Werror``) into a runner."""
    src_dir = Path(src_dir)
    gcc = shutil.which("gcc")
    if gcc is None:
        raise EdgekdError("gcc not found: install it (Debian package gcc) to build the generated C on the host")
    for name in ("model.c", "model.h", "kernels.c", "kernels.h"):
        if not (src_dir / name).is_file():
            raise EdgekdError(f"{src_dir}: {name} missing; run generate_c first")
    harness = src_dir / "host_main.c"
    with atomic_path(harness) as tmp:
        tmp.write_text(HARNESS)
    exe = Path(exe) if exe else src_dir / "host_runner"
    with atomic_path(exe) as tmp:
        proc = subprocess.run([gcc, *CFLAGS, "-I", str(src_dir), str(src_dir / "model.c"), str(src_dir / "kernels.c"),
                               str(harness), "-o", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgekdError(f"gcc failed on the generated C in {src_dir}: {proc.stderr.strip()[-2000:]}")
        tmp.chmod(0o755)
    return exe


def run_host(exe: str | Path, x: np.ndarray, output_size: int, timeout: float = 600) -> np.ndarray:
    """Run the compiled runner on int8 inputs ``x`` (N, ...model input...); returns int8 (N, output_size)."""
    x = np.ascontiguousarray(x, dtype=np.int8)
    n = len(x)
    with tempfile.TemporaryDirectory(prefix="edgekd-c-") as tmp:
        src, dst = Path(tmp) / "x.bin", Path(tmp) / "y.bin"
        src.write_bytes(x.tobytes())
        proc = subprocess.run([str(exe), str(src), str(dst), str(n)], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise EdgekdError(f"{exe} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return np.frombuffer(dst.read_bytes(), dtype=np.int8).reshape(n, output_size).copy()
