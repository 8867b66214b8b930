"""edgekd's cycle models against published cycle counts of code that can be fetched and built offline (issue 14).

    .venv/bin/python scripts/validate_cycles_published.py [--fetch]   # ~10 s once the source is cached

The program is Dhrystone 2.1, the only published per-core cycle figure found whose source a package registry
ships: Debian's ``linux-source-6.12`` carries it as lib/dhry_1.c, dhry_2.c, dhry.h (Linux's port of Weicker's
C version 2.1). Those three files are taken from the installed package's tarball (/usr/src/linux-source-6.12.tar.xz;
``--fetch`` runs ``apt-get download linux-source-6.12`` when it is not installed) into edgekd's cache; nothing of
them is committed. The script writes its own kernel-header shims (ktime, kzalloc, pr_err), a harness and a
startup, builds with arm-none-eabi-gcc -O2 -fno-inline (Dhrystone's ground rules: no inlining; each file compiled
separately), and counts one Dhrystone loop as the difference of ``dhry(20)`` and ``dhry(120)`` divided by 100:
  - Cortex-M4 / M7: unicorn, every executed block charged by edgekd/emulate/timing_m.py exactly as ``time_invoke``
    charges it (table cost + taken-branch refill), no flash wait states (the published figures are for
    zero-wait-state memory);
  - Cortex-M55: QEMU mps3-an547 (code in ITCM, data in DTCM) with edgekd's tb_profile plugin marking every call of
    a marker function, each phase charged by edgekd/emulate/timing_m55.py.
Published figures (cycles per Dhrystone loop = 10^6 / (1757 x DMIPS/MHz)) are in :data:`PUBLISHED` with their
sources; they were obtained with Arm's compilers, not GCC 12, so the difference mixes compiler and core model.
Writes docs/cycle_validation_published.json and the `cyclepublished` table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchdocs import replace_section  # noqa: E402

from edgekd.cores import CORES  # noqa: E402
from edgekd.emulate import cache_dir  # noqa: E402
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.io import write_json  # noqa: E402
from edgekd.tools import require_tool  # noqa: E402

DHRY_PACKAGE = "linux-source-6.12"
DHRY_FILES = ("dhry.h", "dhry_1.c", "dhry_2.c")
RUNS = (20, 120)  # dhry(20) then dhry(120): the difference is 100 loops, setup and checks cancel
CFLAGS = ("-O2", "-fno-inline", "-mthumb", "-ffunction-sections", "-fdata-sections")
INLINED = tuple(f for f in CFLAGS if f != "-fno-inline")  # the sensitivity build: GCC may inline within a file


@dataclass(frozen=True)
class Published:
    """A published Dhrystone figure for one core, with where it comes from and how it was built."""

    dmips_per_mhz: float
    cycles: float  # per Dhrystone loop
    source: str
    compiler: str


PUBLISHED: dict[str, Published] = {
    "cortex-m4": Published(
        1e6 / (1757 * 454), 454,
        "Arm Knowledge Article KA16828 ('How do Dhrystone results in the Cortex-M3 example system compare with those "
        "in the Cortex-M4 Integration Kit?'): 454 cycles per Dhrystone loop for the Cortex-M4 at zero wait states, "
        "read from the testbench's tarmac log (KA16376's table, 1.25 DMIPS/MHz, includes 1-2 entry/exit cycles)",
        "ARM Compiler 5.04 update 1 (DS-5 5.18), Dhrystone ground rules"),
    "cortex-m7": Published(
        2.14, 1e6 / (1757 * 2.14),
        "Arm's Cortex-M7 figure, 2.14 DMIPS/MHz (Dhrystone 2.1), as quoted in ST's STM32F7/H7 and Microchip's "
        "SAME70 datasheets (cycles per loop = 10^6 / (1757 x 2.14))",
        "Arm's compiler, Dhrystone ground rules (first of Arm's three published columns)"),
    "cortex-m55": Published(
        1.60, 1e6 / (1757 * 1.60),
        "Arm Cortex-M Processor Comparison Table v3 (2020): 1.60 DMIPS/MHz for the Cortex-M55 (cycles per loop = "
        "10^6 / (1757 x 1.60))",
        "Arm's compiler, Dhrystone ground rules (first of Arm's three published columns)"),
}

# Our own stand-ins for the Linux headers dhry_1.c/dhry_2.c include; failures of the benchmark's final checks
# (pr_err) are counted so a wrong build is caught.
COMPAT_H = """\
#ifndef EDGEKD_DHRY_COMPAT_H
#define EDGEKD_DHRY_COMPAT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
typedef int64_t ktime_t;
typedef uint32_t u32;
typedef uint64_t u64;
#define GFP_ATOMIC 0
#define ENOMEM 12
#define EAGAIN 11
#define MSEC_PER_SEC 1000L
extern int edgekd_dhry_errors;
void *kzalloc(size_t size, int flags);
static inline void kfree(const void *p) { (void)p; }
static inline ktime_t ktime_get(void) { return 0; }
static inline int64_t ktime_ms_delta(ktime_t a, ktime_t b) { return a - b; }
static inline u64 mul_u32_u32(u32 a, u32 b) { return (u64)a * b; }
static inline u64 div_u64(u64 a, u32 b) { return b ? a / b : 0; }
#define pr_debug(...) ((void)0)
#define pr_err(...) ((void)edgekd_dhry_errors++)
#endif
"""

HARNESS_C = f"""\
#include <stddef.h>
#include <string.h>
int dhry(int n);
int edgekd_dhry_errors;
static unsigned char heap[8][64] __attribute__((aligned(8)));
static unsigned heap_next;
void *kzalloc(size_t size, int flags) {{
  (void)flags;
  unsigned char *p = heap[heap_next++ % 8];
  memset(p, 0, size);
  return p;
}}
/* Every call of this function starts a new phase (unicorn hook; tb_profile lo=/hi=). */
__attribute__((noinline)) void edgekd_mark(void) {{ __asm volatile("" ::: "memory"); }}
volatile int edgekd_result[2];
int main(void) {{
  edgekd_mark();
  edgekd_result[0] = dhry({RUNS[0]});
  edgekd_mark();
  edgekd_result[1] = dhry({RUNS[1]});
  edgekd_mark();
  return edgekd_dhry_errors;
}}
"""

STARTUP_C = """\
extern unsigned int _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);
static void semihost_exit(unsigned reason) {
  register unsigned r0 __asm("r0") = 0x18;
  register unsigned r1 __asm("r1") = reason;
  __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
  for (;;) {}
}
void Fault_Handler(void) { semihost_exit(0x20023); }
void Reset_Handler(void) {
  unsigned int *s = &_sidata, *d = &_sdata;
  while (d < &_edata) *d++ = *s++;
  for (d = &_sbss; d < &_ebss;) *d++ = 0;
  *(volatile unsigned int *)0xE000ED88 |= 0xFu << 20; /* CPACR: FPU/MVE on */
  __asm volatile("dsb\\n isb" ::: "memory");
  semihost_exit(main() == 0 ? 0x20026 : 0x20023);
}
__attribute__((section(".vectors"), used)) void (*const edgekd_vectors[16])(void) = {
  (void (*)(void))&_estack, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
  Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler};
"""

# Code at 0 and data at 0x20000000: the mps3-an547's ITCM and DTCM (zero wait states); unicorn maps the same.
LINK_LD = """\
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 512K
         RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 256K }
ENTRY(Reset_Handler)
SECTIONS {
  .text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) . = ALIGN(4); } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  _sidata = LOADADDR(.data);
  .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > FLASH
  .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}
"""


def dhrystone_dir() -> Path:
    """Where the three Dhrystone files are cached (edgekd's emulator cache, not the repository)."""
    return cache_dir() / "third_party" / "dhrystone-linux-6.12"


def _tarball() -> Path | None:
    """The installed package's source tarball (Linux 6.1 and older have no Dhrystone)."""
    path = Path("/usr/src") / f"{DHRY_PACKAGE}.tar.xz"
    return path if path.is_file() else None


def dhrystone_sources(fetch: bool = False) -> Path | None:
    """The cached Dhrystone sources, extracted from the installed ``linux-source-6.12`` package (or, with
    ``fetch``, from ``apt-get download linux-source-6.12``); None when neither is at hand."""
    dest = dhrystone_dir()
    if all((dest / f).is_file() for f in DHRY_FILES):
        return dest
    with tempfile.TemporaryDirectory(prefix="edgekd-dhry-") as tmp:
        work = Path(tmp)
        tarball = _tarball()
        if tarball is None and fetch:
            subprocess.run(["apt-get", "download", DHRY_PACKAGE], cwd=work, check=True)
            deb = next(work.glob(f"{DHRY_PACKAGE}_*.deb"))
            unpack = ["dpkg-deb", "--fsys-tarfile", str(deb)]
            with subprocess.Popen(unpack, cwd=work, stdout=subprocess.PIPE) as deb_tar:
                subprocess.run(["tar", "-x", "--wildcards", "*linux-source-*.tar.xz"], cwd=work,
                               stdin=deb_tar.stdout, check=True)
            if deb_tar.returncode:
                raise EdgekdError(f"dpkg-deb could not read {deb.name}")
            deb.unlink()
            tarball = next(work.rglob("linux-source-*.tar.xz"))
        if tarball is None:
            return None
        subprocess.run(["tar", "-xJf", str(tarball), "--wildcards", *(f"*/lib/{f}" for f in DHRY_FILES)],
                       cwd=work, check=True)
        lib = next(p.parent for p in work.rglob("dhry_1.c"))
        staged = dest.with_name(dest.name + ".part")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        for f in DHRY_FILES:
            shutil.copy2(lib / f, staged / f)
        shutil.rmtree(dest, ignore_errors=True)
        staged.rename(dest)
    return dest


def build(src: Path, core: str, work: Path, cflags: tuple[str, ...] = CFLAGS) -> Path:
    """Dhrystone + harness + startup for ``core`` (the project's flags for it), -O2 -fno-inline, linked at
    0x0 / 0x20000000 with newlib's string functions."""
    gcc = require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    inc = work / "include"
    (inc / "linux").mkdir(parents=True, exist_ok=True)
    (inc / "edgekd_dhry_compat.h").write_text(COMPAT_H)
    for h in ("ktime.h", "slab.h", "string.h"):
        (inc / "linux" / h).write_text('#include "edgekd_dhry_compat.h"\n')
    (work / "harness.c").write_text(HARNESS_C)
    (work / "startup.c").write_text(STARTUP_C)
    (work / "link.ld").write_text(LINK_LD)
    flags = [*CORES[core].gcc_flags, *cflags, f"-I{inc}", f"-I{src}"]
    objs = []
    for c in (src / "dhry_1.c", src / "dhry_2.c", work / "harness.c", work / "startup.c"):
        obj = work / f"{core}-{c.stem}.o"
        subprocess.run([gcc, *flags, "-c", str(c), "-o", str(obj)], check=True)
        objs.append(str(obj))
    elf = work / f"dhry-{core}.elf"
    subprocess.run([gcc, *flags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                    f"-T{work / 'link.ld'}", "-Wl,--gc-sections", *objs, "-o", str(elf)], check=True)
    return elf


def _symbols(elf: Path) -> dict[str, tuple[int, int]]:
    from elftools.elf.elffile import ELFFile

    with elf.open("rb") as f:
        return {s.name: (s["st_value"], s["st_size"]) for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}


def phases_unicorn(elf: Path, core: str) -> list[tuple[int, int, int, int]]:
    """(instructions, cycles, taken branches, their refill cycles) of each phase of ``main`` on unicorn, a new
    phase at every ``edgekd_mark`` call, each executed block charged by timing_m as ``time_invoke`` charges it
    (no flash wait states)."""
    import unicorn
    from elftools.elf.elffile import ELFFile
    from unicorn import arm_const

    from edgekd.emulate.timing_m import _block_cost, disassemble, taken_refill

    insns = disassemble(elf)
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(getattr(arm_const, str(CORES[core].unicorn_cpu)))
    ret = 0x30000000
    for origin, size in ((0x0, 512 << 10), (0x20000000, 256 << 10), (ret, 0x1000)):
        uc.mem_map(origin, size)
    with elf.open("rb") as f:
        for s in ELFFile(f).iter_sections():
            if s["sh_flags"] & 0x2 and s["sh_type"] == "SHT_PROGBITS" and s["sh_size"]:
                uc.mem_write(s["sh_addr"], s.data())
    sym = _symbols(elf)
    uc.reg_write(arm_const.UC_ARM_REG_C1_C0_2, uc.reg_read(arm_const.UC_ARM_REG_C1_C0_2) | (0xF << 20))
    uc.mem_write(ret, b"\x00\xbf" * 4)
    uc.reg_write(arm_const.UC_ARM_REG_SP, sym["_estack"][0])
    uc.reg_write(arm_const.UC_ARM_REG_LR, ret | 1)
    mark = sym["edgekd_mark"][0] & ~1
    cache: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    phases: list[list[int]] = [[0, 0, 0, 0]]
    state = {"pending": 0, "fall": -1}

    def cost(address: int, size: int) -> tuple[int, int, int, int]:
        if (address, size) not in cache:
            run, a = [], address
            while a < address + size and a in insns:
                run.append(insns[a])
                a += insns[a].size
            branch = bool(run) and run[-1].klass in ("branch", "pop_pc", "branch_load")
            cache[(address, size)] = (len(run), _block_cost(run, core), address + size, int(branch))
        return cache[(address, size)]

    def on_block(engine: Any, address: int, size: int, _: Any) -> None:
        n, c, fall, branch = cost(address, size)
        if address == mark:
            phases.append([0, 0, 0, 0])
        if state["pending"] and address != state["fall"]:  # the previous block's branch was taken
            refill = taken_refill(core, insns.get(address), address)
            phases[-1][1] += refill
            phases[-1][2] += 1
            phases[-1][3] += refill
        phases[-1][0] += n
        phases[-1][1] += c
        state["pending"], state["fall"] = branch, fall

    uc.hook_add(unicorn.UC_HOOK_BLOCK, on_block)
    uc.emu_start(sym["main"][0] | 1, ret)
    if uc.reg_read(arm_const.UC_ARM_REG_R0) != 0:
        raise EdgekdError(f"Dhrystone's final checks failed on {core} (unicorn): the build is wrong")
    return [(p[0], p[1], p[2], p[3]) for p in phases]


def phases_qemu_m55(elf: Path, timeout: float = 120.0) -> list[tuple[int, int, int, int]]:
    """(instructions, cycles, taken branches, their refill cycles) of each phase on QEMU mps3-an547,
    tb_profile marking ``edgekd_mark``'s blocks, each phase charged by timing_m55."""
    from edgekd.emulate.qemu_plugin import build_plugin
    from edgekd.emulate.timing_m55 import Op, charge, disassemble, read_phases, refill
    from edgekd.emulate.timing_m55 import _symbols as fn_symbols

    plugin = build_plugin(cache_dir() / "plugins", "tb_profile.c")
    if plugin is None:
        raise EdgekdError("QEMU's plugin header is missing (scripts/install_emulators.sh installs it)")
    qemu = require_tool("qemu-system-arm", "qemu-system-arm")
    lo, size = _symbols(elf)["edgekd_mark"]
    lo &= ~1
    with tempfile.TemporaryDirectory(prefix="edgekd-dhry-qemu-") as tmp:
        out = Path(tmp) / "phases.txt"
        proc = subprocess.run([qemu, "-M", "mps3-an547", "-cpu", "cortex-m55", "-nographic", "-monitor", "none",
                               "-serial", "none", "-semihosting-config", "enable=on,target=native",
                               "-kernel", str(elf), "-plugin", f"{plugin},out={out},lo={lo},hi={lo + size}"],
                              cwd=tmp, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.is_file():
            raise EdgekdError(f"Dhrystone on mps3-an547 failed (exit {proc.returncode}): {proc.stderr[-300:]}")
        phases = read_phases(out)
    ops, fns = disassemble(elf), fn_symbols(elf)
    rows = []
    for p in phases.values():
        t = charge(p, ops, fns)
        taken = refills = 0
        for (start, n, _end), (_count, k) in p.blocks.items():
            last, a = None, start
            for _ in range(n):
                last = ops.get(a, Op(2, "?", "alu", 1, 1, 1, (), ()))
                a += last.size
            taken += k
            refills += k * refill(last)
        rows.append((t.instructions, t.cycles, taken, refills))
    return rows


def per_loop(phases: list[tuple[int, int, int, int]]) -> tuple[float, ...]:
    """Instructions, cycles, taken branches and refill cycles of one Dhrystone loop: phase 2 (mark + dhry(120))
    less phase 1 (mark + dhry(20))."""
    if len(phases) != 4:
        raise EdgekdError(f"expected 4 phases (before, dhry({RUNS[0]}), dhry({RUNS[1]}), after), got {len(phases)}")
    loops = RUNS[1] - RUNS[0]
    return tuple((b - a) / loops for a, b in zip(phases[1], phases[2], strict=True))


def measure(src: Path, cores: tuple[str, ...] = ("cortex-m4", "cortex-m7", "cortex-m55"),
            cflags: tuple[str, ...] = CFLAGS) -> list[dict[str, Any]]:
    """One row per core: the model's cycles per Dhrystone loop next to the published figure."""
    gcc = require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    version = subprocess.run([gcc, "-dumpversion"], capture_output=True, text=True).stdout.strip()
    lib = "newlib-nano (libnewlib-arm-none-eabi) string functions"
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgekd-dhry-build-") as tmp:
        for core in cores:
            elf = build(src, core, Path(tmp), cflags)
            if core == "cortex-m55":
                phases = phases_qemu_m55(elf)
                counter = "QEMU mps3-an547 + tb_profile (marks at edgekd_mark), timing_m55"
            else:
                phases = phases_unicorn(elf, core)
                counter = "unicorn + timing_m (per-block table cost + taken-branch refill), no wait states"
            insns, cycles, taken, refills = per_loop(phases)
            pub = PUBLISHED[core]
            rows.append({
                "core": core, "program": "Dhrystone 2.1 (Linux 6.12 lib/dhry_*.c)",
                "build": f"arm-none-eabi-gcc {version} {' '.join(CORES[core].gcc_flags)} {' '.join(cflags)}, {lib}",
                "counter": counter, "instructions_per_loop": round(insns, 2), "model_cycles_per_loop": round(cycles, 2),
                "model_cpi": round(cycles / insns, 3), "taken_branches_per_loop": round(taken, 2),
                "refill_cycles_per_loop": round(refills, 2), "model_dmips_per_mhz": round(1e6 / (1757 * cycles), 3),
                "published_cycles_per_loop": round(pub.cycles, 1),
                "published_dmips_per_mhz": round(pub.dmips_per_mhz, 3),
                "difference_pct": round(100 * (cycles - pub.cycles) / pub.cycles, 1),
                "published_source": pub.source, "published_compiler": pub.compiler})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| core | published cycles / loop (DMIPS/MHz) | edgekd model cycles / loop (DMIPS/MHz) | difference | "
             "instructions / loop (GCC build) | model CPI | taken branches / loop (refill cycles) | counter |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['core']} | {r['published_cycles_per_loop']:.1f} ({r['published_dmips_per_mhz']:.2f}) | "
                     f"{r['model_cycles_per_loop']:.1f} ({r['model_dmips_per_mhz']:.2f}) | "
                     f"{r['difference_pct']:+.1f}% | {r['instructions_per_loop']:.1f} | {r['model_cpi']:.2f} | "
                     f"{r['taken_branches_per_loop']:.0f} ({r['refill_cycles_per_loop']:.0f}) | {r['counter']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fetch", action="store_true", help=f"apt-get download {DHRY_PACKAGE} if it is not installed")
    args = ap.parse_args()
    src = dhrystone_sources(args.fetch)
    if src is None:
        raise SystemExit(f"Dhrystone's source is not at hand: apt-get install {DHRY_PACKAGE}, or rerun with --fetch")
    rows = measure(src)
    inlined = measure(src, cflags=INLINED)
    write_json(ROOT / "docs" / "cycle_validation_published.json",
               {"how": __doc__, "runs": list(RUNS), "published": {k: vars(v) for k, v in PUBLISHED.items()},
                "dhrystone": rows, "sensitivity_inlining_allowed": inlined})
    replace_section("cyclepublished", table(rows))
    print(table(rows))
    print("inlining allowed (sensitivity, not Arm's ground rules):")
    print(table(inlined))


if __name__ == "__main__":
    main()
