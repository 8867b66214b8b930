"""External tools edgekd runs (the Arm cross compiler, QEMU): found on PATH, or a one-line install hint.

Shared by code generation (linking firmware) and the emulators (running it), which must not import each other.
"""

from __future__ import annotations

import shutil
from typing import Any

from edgekd.errors import EdgekdError


def require_tool(name: str, package: str) -> str:
    """Path of executable ``name``, or a one-line error saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise EdgekdError(f"{name} not found: install it with scripts/install_emulators.sh "
                          f"(Debian package {package}), then rerun")
    return path


def emulator_tools(target: Any) -> list[str]:
    """The host tools emulating ``target`` needs (QEMU, and the Arm cross compiler for microcontrollers)."""
    return ["qemu-aarch64"] if target.emulator.kind == "qemu-aarch64" else ["qemu-system-arm", "arm-none-eabi-gcc"]


def check_emulator_choice(choice: str, target: Any) -> None:
    """``--emulator qemu`` insists: refuse it before any training when its tools are not installed."""
    if choice != "qemu" or not target.emulator.kind.startswith("qemu"):
        return
    missing = [t for t in emulator_tools(target) if shutil.which(t) is None]
    if missing:
        raise EdgekdError(f"--emulator qemu: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                          "installed; run scripts/install_emulators.sh or use --emulator auto")
