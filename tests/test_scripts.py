"""The benchmark scripts still run end to end (smoke sizes), so a refactor cannot silently break a recorded figure.

One tiny digits build (1 epoch, --fast) made by scripts/bench.py feeds the others. Every script writes its JSON
into the test's folder and its markdown table into EDGEKD_BENCH_DOC, never into the committed docs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.emulator]


def run_script(name: str, *args: str, doc: Path) -> str:
    env = os.environ | {"EDGEKD_BENCH_DOC": str(doc), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def bench_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/bench.py on one microcontroller target: the build folder the other scripts start from."""
    work = tmp_path_factory.mktemp("bench")
    run_script("bench.py", "--task", "digits", "--fast", "--epochs", "1", "--targets", "nrf52840-dk",
               "--out", str(work / "bench_build.json"), "--builds-dir", str(work / "builds"),
               doc=work / "benchmarks.md")
    return work


def test_bench_build_records_each_target(bench_build: Path) -> None:
    result = json.loads((bench_build / "bench_build.json").read_text())
    (row,) = result["rows"]
    assert row["class"] == "mcu" and row["seconds"] > 0
    assert row["report"]["target"] == "nrf52840-dk"
    assert 0.0 <= row["report"]["student"]["accuracy_float"] <= 1.0
    assert "| nrf52840-dk | mcu |" in (bench_build / "benchmarks.md").read_text()


def test_teacher_calibration_rows(bench_build: Path) -> None:
    out = bench_build / "calibration.json"
    run_script("teacher_calibration.py", "--task", "digits", "--teacher",
               str(bench_build / "builds" / "teacher" / "digits.pt"), "--temperatures", "1,4", "--out", str(out),
               doc=bench_build / "benchmarks.md")
    rows = json.loads(out.read_text())["rows"]
    assert [r["temperature"] for r in rows] == [1.0, 4.0]
    assert rows[0]["accuracy"] > 0.8  # the built-in digits teacher, 8 epochs
    assert rows[1]["entropy_nats"] > rows[0]["entropy_nats"]  # a higher temperature softens the targets


def test_bench_export_verifies_on_runtimes(bench_build: Path) -> None:
    out = bench_build / "export.json"
    run_script("bench_export.py", f"nrf52840-dk={bench_build / 'builds' / 'nrf52840-dk' / 'student'}",
               "--limit", "40", "--out", str(out), "--builds-dir", str(bench_build / "export"),
               doc=bench_build / "benchmarks.md")
    (build,) = json.loads(out.read_text())["builds"]
    runtimes = {r["runtime"] for r in build["verify"]["runs"]}
    assert {"litert", "tflm"} <= runtimes
    assert build["verify"]["samples"]["test"] == 40
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in build["verify"]["runs"])


def test_bench_codegen_is_bit_exact(bench_build: Path) -> None:
    out = bench_build / "codegen.json"
    run_script("bench_codegen.py", "--builds", str(bench_build / "builds"), "--work", str(bench_build / "codegen"),
               "--samples", "5", "--json", str(out), doc=bench_build / "benchmarks.md")
    rows = json.loads(out.read_text())["rows"]
    mine = [r for r in rows if r["target"] == "nrf52840-dk" and "bench build" in r["label"]]
    assert mine and all(r["ok"] and r["bit_exact_vs_host"] for r in mine)


@pytest.mark.heavy  # 40 s of qemu-aarch64 runs: outside the default run, in CI
def test_bench_emulate_on_cortex_a(bench_build: Path) -> None:
    out = bench_build / "emulate.json"
    run_script("bench_emulate.py", "--student", str(bench_build / "builds" / "nrf52840-dk" / "student"),
               "--targets", "raspberry-pi-4b", "--emulator-limit", "4", "--out", str(bench_build / "emulate"),
               "--json", str(out), doc=bench_build / "benchmarks.md")
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r["samples"] == 4 and r["instructions"] > 0 for r in rows)
    assert any(r["bit_exact_vs_host"] for r in rows)
