"""edgekd's QEMU TCG plugins (native/*.c), built on first use against QEMU's ``qemu-plugin.h``.

Debian ships no header for the plugin API; scripts/install_emulators.sh takes it from the same QEMU release's
source tarball. ``insn_window.c`` adds each translated block's length to a counter when the block executes (the
method of QEMU's tests/plugin/insn.c) and writes the counter between marker syscalls (user mode) and at exit
(both modes), so it serves qemu-aarch64 and qemu-system-arm alike. ``insn_class.c`` (aarch64 guests) does the
same per instruction class, for the Cortex-A cycle model (:mod:`edgekd.emulate.timing_a`). ``tb_profile.c``
(Thumb guests, which QEMU 7.2's plugin API does not classify) writes per translated block its executions and
taken exits, for the Cortex-M55 cycle model (:mod:`edgekd.emulate.timing_m55`). All include ``insn_common.h``
(the output file, the marker syscall, the exit line).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from edgekd.errors import EdgekdError

NATIVE = Path(__file__).parent / "native"
HEADER_DIRS = (Path("/usr/local/include"), Path("/usr/include/qemu"))


def plugin_header() -> Path | None:
    """The folder holding qemu-plugin.h (``$EDGEKD_QEMU_PLUGIN_INCLUDE`` first), or None."""
    env = os.environ.get("EDGEKD_QEMU_PLUGIN_INCLUDE")
    for d in ([Path(env)] if env else []) + list(HEADER_DIRS):
        if (d / "qemu-plugin.h").is_file():
            return d
    return None


def build_plugin(dest: Path, source: str = "insn_window.c") -> Path | None:
    """Compile a counting plugin (``native/<source>``) into ``dest`` (cached by the hash of the source and
    insn_common.h); None without gcc or the header."""
    header = plugin_header()
    gcc = shutil.which("gcc")
    if header is None or gcc is None:
        return None
    src = NATIVE / source
    digest = hashlib.sha256(src.read_bytes() + (NATIVE / "insn_common.h").read_bytes())  # the shared part too
    out = dest / f"{src.stem}-{digest.hexdigest()[:12]}.so"
    if not out.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.so")
        proc = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{header}",
                               str(src), "-o", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgekdError(f"compiling the QEMU plugin failed: {proc.stderr.strip()[-500:]}")
        tmp.replace(out)
    return out


def read_total(path: Path) -> int | None:
    """The whole-run instruction count the plugin wrote at exit."""
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("total "):
            return int(line.split()[1])
    return None
