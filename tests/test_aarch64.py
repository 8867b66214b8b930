"""qemu-aarch64 emulation of Raspberry Pi / phone cores: real LiteRT and ExecuTorch runs on the emulated core,
compared with the host, instruction counts, stand-in CPU files, and the failure modes (missing QEMU, unknown
core, crash, hang). Needs scripts/install_emulators.sh (CI runs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from samples import build_sample

from edgekd.cli import main
from edgekd.emulate import EmulatedRun, EmulationRequest, emulate, timing_a
from edgekd.emulate.aarch64 import GuestRun, _read_counts, counted_time, provision, run_guest, stand_in_root
from edgekd.errors import EdgekdError
from edgekd.targets import load_target, parse_target
from edgekd.verify import verify_build
from edgekd.verify.gates import Gate
from edgekd.verify.gates import emulator_gate as gate

pytestmark = [pytest.mark.slow, pytest.mark.emulator]  # qemu-aarch64 and an arm64 root


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


@pytest.fixture(scope="module")
def root():
    return provision()


@pytest.fixture(scope="module")
def pi_runs(pi_build: Path) -> list:
    x, y = build_sample(pi_build, 40)
    return emulate(EmulationRequest(pi_build, load_target("raspberry-pi-4b"), x, y))


def test_every_artifact_runs_on_the_emulated_a72(pi_runs: list) -> None:
    got = {(r.path, r.kernels) for r in pi_runs}
    assert got == {("model_int8.tflite", "reference"), ("model_int8.tflite", "xnnpack"),
                   ("model_fp32.tflite", "xnnpack"), ("model_int8.pte", "xnnpack"), ("model_fp32.pte", "xnnpack")}
    for r in pi_runs:
        assert r.ok, (r.path, r.error, r.log_tail)
        assert r.emulator == "qemu-aarch64/cortex-a72"
        assert r.samples == 40
        assert r.accuracy == pytest.approx(r.host_accuracy, abs=1 / 40)
        assert r.accuracy > 0.7


def test_reference_kernels_are_bit_exact_with_the_host(pi_runs: list) -> None:
    ref = next(r for r in pi_runs if r.kernels == "reference")
    assert ref.bit_exact_vs_host is True and ref.max_diff_vs_host == 0
    assert ref.agreement == 1.0
    assert ref.details.mismatched_outputs == 0


def test_xnnpack_is_really_used_and_within_one_step(pi_runs: list) -> None:
    xnn = next(r for r in pi_runs if r.kernels == "xnnpack" and r.path == "model_int8.tflite")
    assert xnn.details.xnnpack_delegate is True
    assert xnn.max_diff_vs_host <= 1
    ref = next(r for r in pi_runs if r.kernels == "reference")
    # XNNPACK's NEON kernels need several times fewer instructions than the reference kernels.
    assert ref.instructions > 3 * xnn.instructions


def test_float_models_match_the_host_within_tolerance(pi_runs: list) -> None:
    for r in pi_runs:
        if r.precision == "fp32":
            assert r.bit_exact_vs_host is None
            assert r.max_diff_vs_host < 1e-4
            assert r.details.diff_unit == "absolute"


def test_counted_latency_comes_from_the_instruction_classes(pi_runs: list) -> None:
    target = load_target("raspberry-pi-4b")
    for r in pi_runs:
        classes = r.details.instruction_classes
        assert r.instructions == classes["total"] > 100_000
        pred = timing_a.predict(classes, "cortex-a72", target.cpu.clock_mhz)
        assert r.counted_ms == pytest.approx(pred.single_thread_ms)
        assert r.cpi == pytest.approx(pred.cycles / r.instructions, rel=1e-3)
        assert "Cortex-A72 Software Optimization Guide" in r.details.cpi_source
        assert r.details.counted_invokes == 40
        if r.format == "tflite":  # the operator count is known: the 4-core figure is modelled too
            assert r.details.profile_threads == 4 and r.details.to_json()["counted_ms_4_threads"] == \
                r.details.counted_ms_all_threads  # the JSON key report readers use
            assert 0 < r.details.counted_ms_all_threads <= r.counted_ms + 1e-4  # tiny: serial parts dominate
    by = {(r.path, r.kernels): r for r in pi_runs}
    int8, fp32 = by[("model_int8.tflite", "xnnpack")], by[("model_fp32.tflite", "xnnpack")]
    assert int8.details.instruction_classes["imull"] > 0 and fp32.details.instruction_classes["fmul_q"] > 0


def test_counts_repeat(root, pi_build: Path, tmp_path: Path) -> None:
    from edgekd.emulate import model_inputs
    from edgekd.emulate.aarch64 import run_litert_script
    from edgekd.export.student import load_export

    arts = load_export(pi_build).artifacts
    art = next(a for a in arts if a.key == "tflite-int8")
    x = model_inputs(build_sample(pi_build, 4)[0], art.details)
    view = stand_in_root(root, load_target("raspberry-pi-4b"))
    a = run_litert_script(pi_build / art.path, x, "xnnpack", tmp_path, 300, (root, view, "cortex-a72"))
    b = run_litert_script(pi_build / art.path, x, "xnnpack", tmp_path, 300, (root, view, "cortex-a72"))
    # Between processes the address layout moves a few dozen instructions (alignment paths): within 0.01%.
    assert a.instructions[1:] == pytest.approx(b.instructions[1:], rel=1e-4)
    assert np.array_equal(a.outputs, b.outputs)


def test_counted_time_drops_the_first_invoke_and_says_what_it_models() -> None:
    target = load_target("google-pixel-8")  # a Cortex-A715: QEMU runs it as the A76, timed as the A76
    base = {"total": 1_000_000, "fmul_q": 400_000, "vld": 200_000, "alu": 100_000}
    invokes = [base | {"total": 10_000_000}, base, base | {"total": 1_000_002}, base | {"total": 999_998}]
    run = GuestRun(True, None, [c["total"] for c in invokes], 0, "", {}, classes=invokes)
    counted = counted_time(run, "cortex-a76", target, operators=30)
    assert counted.instructions == 1_000_000
    pred = timing_a.predict(base, "cortex-a76", 2370)
    assert counted.ms == pytest.approx(pred.single_thread_ms)
    assert counted.threads == 4
    assert counted.threads_ms == pytest.approx(timing_a.threads_ms(pred.single_thread_ms, 4, 30, 2370))
    assert "cortex-a715 runs as qemu cortex-a76 and is timed as the cortex-a76" in counted.source
    assert counted_time(GuestRun(True, None, [], 0, "", {}), "cortex-a76", target, 30) is None


@pytest.fixture(scope="module")
def mix_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static aarch64 program running a loop of known instructions 1000 times between the marker syscalls."""
    gcc = shutil.which("aarch64-linux-gnu-gcc")
    if gcc is None:
        pytest.fail("aarch64-linux-gnu-gcc not found: run scripts/install_emulators.sh")
    src = tmp_path_factory.mktemp("mix") / "mix.c"
    src.write_text(MIX_C)
    out = src.with_suffix("")
    subprocess.run([gcc, "-O1", "-static", "-march=armv8.2-a+dotprod", str(src), "-o", str(out)], check=True)
    return out


# One line per instruction and the class insn_class.c must give it; the loop runs 1000 times.
MIX = [("fmla v0.4s, v1.4s, v2.4s", "fmul_q"), ("fmla v3.2s, v1.2s, v2.s[1]", "fmul_d"),
       ("fmul v3.4s, v1.4s, v2.s[0]", "fmul_q"), ("smlal v4.8h, v5.8b, v6.8b", "imull"),
       ("smlal2 v4.4s, v5.8h, v6.h[2]", "imull"), ("smull v4.8h, v5.8b, v6.8b", "imull"),
       ("sadalp v7.4s, v8.8h", "vacc_q"), ("sdot v9.4s, v10.16b, v11.4b[0]", "dot_q"),
       ("sdot v9.4s, v10.16b, v11.16b", "dot_q"), ("mul v12.4s, v13.4s, v14.4s", "imul_q"),
       ("sqrdmulh v12.4s, v13.4s, v14.4s", "imul_q"), ("add v15.4s, v15.4s, v16.4s", "vint_q"),
       ("sxtl v15.8h, v16.8b", "vint_d"), ("fadd v17.4s, v17.4s, v16.4s", "fp_q"),
       ("fmax v17.4s, v17.4s, v16.4s", "fp_q"), ("ld1 {v18.16b, v19.16b, v20.16b, v21.16b}, [%0]", "vld:4"),
       ("ldp q22, q23, [%0]", "vld:2"), ("ldr q24, [%0]", "vld"), ("ld1r {v25.4s}, [%0]", "vld"),
       ("st1 {v25.16b}, [%0]", "vst"), ("stp q22, q23, [%0]", "vst:2"), ("ldr x9, [%0]", "ld"),
       ("ldrsw x9, [%0]", "ld"), ("ldp x9, x10, [%0]", "ld"), ("str x9, [%0]", "st"),
       ("madd x10, x10, x11, x12", "mul"), ("add x13, x13, #1", "alu"), ("subs %1, %1, #1", "alu"),
       ("b.ne 1b", "branch")]
MIX_C = ("#include <unistd.h>\n#include <sys/syscall.h>\nstatic unsigned char buf[256] __attribute__((aligned(16)));\n"
         "int main(void) {\n  unsigned char *p = buf;\n  long n = 1000;\n  syscall(0xED6E, 1, 0);\n"
         "  __asm__ volatile(\"1:\\n\"\n" + "".join(f'    "{line}\\n"\n' for line, _ in MIX) +
         '    : "+r"(p), "+r"(n) : : "x9", "x10", "x11", "x12", "x13", "memory", "cc", '
         + ", ".join(f'"v{i}"' for i in range(26)) + ");\n  syscall(0xED6E, 2, 0);\n  return 0;\n}\n")


def test_instruction_classes_of_a_known_loop(root, mix_binary: Path, tmp_path: Path) -> None:
    """Each class count is 1000 x the loop's instructions of that class (plus the marker syscall's few)."""
    out = tmp_path / "counts"
    subprocess.run(["qemu-aarch64", "-cpu", "cortex-a76", "-plugin", f"{root.plugin},out={out}", str(mix_binary)],
                   check=True, timeout=60)
    _, _, classes = _read_counts(out)
    want: dict[str, int] = {}
    for _, cls in MIX:
        name, _, weight = cls.partition(":")
        want[name] = want.get(name, 0) + 1000 * int(weight or 1)
    got = classes[0]
    for name in timing_a.CLASSES:
        assert want.get(name, 0) <= got[name] <= want.get(name, 0) + 30, (name, got[name], want.get(name, 0))
    assert 1000 * len(MIX) <= got["total"] <= 1000 * len(MIX) + 60


def test_stand_in_cpu_files_describe_the_profile(root) -> None:
    view = stand_in_root(root, load_target("raspberry-pi-5"))
    cpuinfo = (view / "proc" / "cpuinfo").read_text()
    assert cpuinfo.count("processor\t:") == 4
    assert "CPU part\t: 0xd0b" in cpuinfo and "asimddp" in cpuinfo
    cpu = view / "sys" / "devices" / "system" / "cpu"
    assert (cpu / "possible").read_text() == "0-3\n"
    assert (cpu / "cpu3" / "cpufreq" / "cpuinfo_max_freq").read_text() == "2400000\n"
    assert (cpu / "cpu0" / "regs" / "identification" / "midr_el1").read_text().strip() == "0x00000000414fd0b1"
    assert (view / "usr").resolve() == (root.path / "usr").resolve()


def test_verify_with_the_emulator_gates_and_counts(pi_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    shutil.copytree(pi_build, build)
    result = verify_build("raspberry-pi-4b", build, limit=60, emulator="qemu", emulator_limit=20).to_json()
    assert len(result["emulated"]) == 5
    assert {r["samples"] for r in result["emulated"]} == {20}
    assert result["gates"]["emulator"]["passed"]
    assert result["gates"]["latency"]["kind"] == "counted"
    worst = max(r["counted_ms"] for r in result["emulated"] if r["kernels"] != "reference")
    assert result["gates"]["latency"]["value"] == pytest.approx(worst, rel=1e-3)
    assert json.loads((build / "verify.json").read_text())["emulated"][0]["emulator"] == "qemu-aarch64/cortex-a72"


def test_a_crash_is_a_failed_run_with_the_log_tail(root, tmp_path: Path) -> None:
    view = stand_in_root(root, load_target("raspberry-pi-4b"))
    python = str(root.path / "usr" / "bin" / "python3.11")
    g = run_guest(root, view, "cortex-a72", [python, "-c", "print('about to crash', flush=True); import ctypes; "
                                                           "ctypes.string_at(0)"],
                  tmp_path / "y.npy", None, 120)
    assert not g.ok and "crashed" in g.error
    assert "about to crash" in g.log


def test_a_hang_is_a_failed_run_within_the_timeout(root, tmp_path: Path) -> None:
    import time

    view = stand_in_root(root, load_target("raspberry-pi-4b"))
    started = time.perf_counter()
    g = run_guest(root, view, "cortex-a72", [str(root.path / "usr" / "bin" / "python3.11"), "-c",
                                             "while True: pass"], tmp_path / "y.npy", None, 5)
    assert time.perf_counter() - started < 30
    assert not g.ok and "timed out after 5 s" in g.error


def test_the_emulator_gate_fails_on_a_crash_or_a_reference_mismatch() -> None:
    base = {"path": "model_int8.tflite", "runtime": "litert", "emulator": "qemu-aarch64/cortex-a72",
            "precision": "int8", "ok": True, "bit_exact_vs_host": True, "max_diff_vs_host": 0.0, "error": None,
            "log_tail": None, "format": "tflite", "samples": 1}

    def emulator_gate(runs: list[dict]) -> Gate:  # the gate reads typed runs
        return gate([EmulatedRun(**r) for r in runs])

    assert emulator_gate([base | {"kernels": "reference"}, base | {"kernels": "xnnpack"}]).passed
    crashed = emulator_gate([base | {"kernels": "xnnpack", "ok": False, "error": "crashed (exit code -11)",
                                     "log_tail": "Segmentation fault"}])
    assert not crashed.passed and "Segmentation fault" in crashed.detail
    wrong = emulator_gate([base | {"kernels": "reference", "bit_exact_vs_host": False, "max_diff_vs_host": 3.0}])
    assert not wrong.passed and "3 steps" in wrong.detail
    # XNNPACK may differ by a requantization step between x86 and Arm: reported, not failed.
    assert emulator_gate([base | {"kernels": "xnnpack", "bit_exact_vs_host": False, "max_diff_vs_host": 1.0}]).passed


def test_missing_qemu_says_how_to_install(monkeypatch: pytest.MonkeyPatch, pi_build: Path) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name.startswith("qemu") else real(name))
    x, y = np.zeros((1, 1, 8, 8), np.float32), np.zeros(1, int)
    with pytest.raises(EdgekdError, match="qemu-aarch64 not found.*install_emulators.sh"):
        emulate(EmulationRequest(pi_build, load_target("raspberry-pi-4b"), x, y))


def test_an_unknown_core_is_named() -> None:
    """Refused when the profile is read (validated against the emulator's core table), not late in a build."""
    import yaml

    data = yaml.safe_load(Path(load_target("raspberry-pi-4b").path).read_text())
    data["emulator"]["cpu"] = "cortex-a99"
    with pytest.raises(EdgekdError, match="cortex-a99.*cortex-a72"):
        parse_target(data, "test")


def test_cli_refuses_an_emulator_on_a_target_without_one(mcu_build: Path) -> None:
    res = CliRunner().invoke(main, ["verify", "--target", "esp32-s3-devkitc-1", str(mcu_build), "--emulator",
                                    "qemu", "--limit", "10"])
    assert res.exit_code == 2
    assert "has no QEMU machine" in res.output


def test_latency_counts_a_tflite_on_the_emulated_core(pi_build: Path) -> None:
    res = CliRunner().invoke(main, ["latency", "--target", "raspberry-pi-5", str(pi_build / "model_int8.tflite"),
                                    "--emulator", "qemu", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["kind"] == "counted" and report["emulator"] == "qemu-aarch64/cortex-a76"
    assert report["instructions"] > 10_000 and report["estimated_ms"] > 0
    assert 0 < report["counted_threads_ms"] <= report["ms"] and report["counted_threads"] == 4
    assert "counted by class" in report["method"] and "Cortex-A76 Software Optimization Guide" in report["method"]
    res = CliRunner().invoke(main, ["latency", "--target", "esp32-s3-devkitc-1", str(pi_build / "model_int8.tflite"),
                                    "--emulator", "qemu"])
    assert res.exit_code == 2 and "has no QEMU machine" in res.output
