"""Use a release bundle the way a firmware engineer would, and record what it costs (issue 18).

For each microcontroller target: `edgekd build --fast` (a bundle), extract it into an empty folder, then the three
commands of the README's "Using a bundle in your firmware" (configure the bundle's example with its toolchain
file, build it, run it on the QEMU board), check that the firmware reports every vector matching and that its
y.bin is byte-identical with the bundle's expected outputs, and read flash and RAM from the downstream ELF's
section headers against the profile's budgets (beside the ELF edgekd's own verify built).

    .venv/bin/python scripts/bench_package_library.py [--targets nrf52840-dk,alif-ensemble-e3] [--work DIR]

Writes docs/package_library.json and prints the markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 1800) -> tuple[
        subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return proc, time.perf_counter() - start


def bench(target: str, work: Path) -> dict:
    from edgekd.cores import BOARDS
    from edgekd.package.library import footprint

    out = work / "builds" / target
    env = dict(os.environ, PYTHONPATH=str(ROOT), EDGEKD_CACHE=str(work / "cache"), OMP_NUM_THREADS="1")
    proc, build_s = _run([sys.executable, "-m", "edgekd.cli", "build", "--target", target, "--fast", "--out",
                          str(out), "--json"], ROOT, env)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"edgekd build {target} failed: {proc.stderr[-2000:]}")
    bundle = next(out.glob("edgekd-*.tar.gz"))
    user = work / "user" / target
    shutil.rmtree(user, ignore_errors=True)
    user.mkdir(parents=True)
    with tarfile.open(bundle, "r:gz") as tar:
        tar.extractall(user, filter="data")
    folder = next(user.iterdir())
    manifest = json.loads((folder / "manifest.json").read_text())
    if "library" not in manifest.get("layouts", {}):
        return {"target": target, "bundle": bundle.name, "error": "no generated C in the bundle (its verify did not "
                "run the generated C on QEMU): no library layout", "build_passed": proc.returncode == 0}
    board = manifest["generated_c"]["boards"][0]
    machine = board["machine"]
    commands = [
        ["cmake", "-S", "example", "-B", "build", f"-DCMAKE_TOOLCHAIN_FILE={folder / 'board' / 'toolchain.cmake'}",
         "-DCMAKE_BUILD_TYPE=MinSizeRel"],
        ["cmake", "--build", "build"],
        ["qemu-system-arm", "-M", machine, "-cpu", BOARDS[machine].cpu, "-nographic", "-monitor", "none", "-serial",
         "none", "-semihosting-config", "enable=on,target=native", "-kernel", "build/selftest.elf"]]
    times, outputs = [], []
    for cmd in commands:
        p, secs = _run(cmd, folder, timeout=600)
        times.append(round(secs, 2))
        outputs.append(p.stdout + p.stderr)  # QEMU prints the semihosting console on stderr
        if p.returncode != 0:
            raise SystemExit(f"{target}: {' '.join(cmd[:3])} failed ({p.returncode}): {p.stdout[-1500:]}"
                             f"{p.stderr[-1500:]}")
    stem = Path(next(a["path"] for a in manifest["artifacts"] if a["format"] == "tflite"
                     and a["precision"] == "int8")).stem
    want = (folder / "vectors" / f"expected_{stem}_int8.bin").read_bytes()
    got = (folder / "y.bin").read_bytes()
    match = re.search(r"(\d+)/(\d+) vectors match", outputs[2])
    size = footprint(folder / "build" / "selftest.elf")
    budgets = manifest["budgets"]
    return {
        "target": target, "core": board["core"], "qemu": f"qemu-system-arm -M {machine} -cpu {BOARDS[machine].cpu}",
        "bundle": bundle.name, "build_passed": proc.returncode == 0, "edgekd_build_s": round(build_s, 1),
        "commands": [" ".join(c) for c in commands], "command_s": times,
        "vectors": manifest["vectors"]["count"], "self_test": match.group(0) if match else None,
        "y_bin_byte_identical": got == want, "flash_bytes": size["flash_bytes"], "ram_bytes": size["ram_bytes"],
        "sections": size["sections"], "flash_budget_bytes": budgets["flash_bytes"],
        "ram_budget_bytes": budgets["ram_bytes"], "arena_bytes": board["arena_bytes"],
        "verify_elf_flash_bytes": board["flash_bytes"], "verify_elf_ram_bytes": board["ram_bytes"],
        "flags": manifest["layouts"]["library"]["cpu_flags"],
    }


def table(rows: list[dict]) -> str:
    lines = ["| target (core, QEMU board) | self-test on QEMU | y.bin vs bundle | downstream flash / budget | "
             "downstream RAM / budget | edgekd's verify ELF flash / RAM | configure, build, run |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['target']} | {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['target']} ({r['core']}, {r['qemu'].split(' -M ')[1].split()[0]}) | {r['self_test']} | "
            f"{'byte-identical' if r['y_bin_byte_identical'] else 'DIFFERS'} | {r['flash_bytes']:,} / "
            f"{r['flash_budget_bytes']:,} B ({100 * r['flash_bytes'] / r['flash_budget_bytes']:.1f}%) | "
            f"{r['ram_bytes']:,} / {r['ram_budget_bytes']:,} B ({100 * r['ram_bytes'] / r['ram_budget_bytes']:.1f}%) | "
            f"{r['verify_elf_flash_bytes']:,} / {r['verify_elf_ram_bytes']:,} B | "
            f"{r['command_s'][0]} s, {r['command_s'][1]} s, {r['command_s'][2]} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="nrf52840-dk,alif-ensemble-e3")
    ap.add_argument("--work", default="/tmp/edgekd-bench-package-library")
    ap.add_argument("--out", default=str(ROOT / "docs" / "package_library.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = [bench(t, work) for t in args.targets.split(",")]
    versions = {tool: subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
                for tool in ("cmake", "arm-none-eabi-gcc", "qemu-system-arm")}
    doc = {"how": "scripts/bench_package_library.py: edgekd build --fast per target, bundle extracted into an empty "
                  "folder, then the README's three commands; flash = sections in the flash region + .data's image, "
                  "RAM = .data + .bss + .stack, from the downstream ELF's section headers (pyelftools)",
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "tools": versions, "results": rows}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
