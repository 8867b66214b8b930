"""`edgekd build`: the stage pipeline, skipping unchanged stages, report.json's schema, shared teachers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekd.build import BuildOptions, build
from edgekd.cli import main

REPORT_KEYS = {"target", "task", "teacher", "student", "artifacts", "budgets", "gates", "passed", "timings_s",
               "versions"}
ARTIFACT_KEYS = {"format", "path", "bytes", "sha256", "runtime", "emulator", "accuracy", "agreement_with_float",
                 "arena_bytes", "latency_ms", "latency_kind"}


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs and teacher outputs out of ~/.cache/edgekd."""


def _opts(**kw) -> BuildOptions:
    return BuildOptions(**({"fast": True, "epochs": 2, "teacher_epochs": 2, "families": ["dscnn"],
                            "progress": False} | kw))


def test_fast_build_writes_the_report_schema_and_skips_unchanged_stages(tmp_path: Path) -> None:
    out = tmp_path / "b"
    r = build(["nrf52840-dk"], _opts(), out)["reports"][0]
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= REPORT_KEYS and report == json.loads(json.dumps(r))
    assert set(report["teacher"]) >= {"params", "accuracy"} and report["teacher"]["params"] > 0
    assert set(report["student"]) >= {"family", "config", "params", "macs", "accuracy_float", "accuracy_no_teacher"}
    assert report["student"]["accuracy_no_teacher"] is None
    assert set(report["budgets"]) == {"flash_bytes", "ram_bytes", "latency_ms"}
    assert set(report["gates"]) == {"flash", "ram", "latency", "fidelity", "emulator"}
    formats = {(a["format"], a["runtime"]) for a in report["artifacts"]}
    assert formats == {("tflite", "litert"), ("tflite", "tflm"), ("c", "tflm"), ("c", "edgekd-c")}
    for a in report["artifacts"]:
        assert set(a) >= ARTIFACT_KEYS and a["latency_kind"] in ("measured", "counted", "estimated")
        assert (out / a["path"]).is_file() and a["arena_bytes"] > 0
    # QEMU is installed (scripts/install_emulators.sh): "auto" ran the generated C on the emulated Cortex-M4.
    c = next(a for a in report["artifacts"] if a["runtime"] == "edgekd-c")
    assert c["emulator"] == "qemu-system-arm/mps2-an386" and c["bit_exact_vs_host"] is True
    assert c["path"] == "artifacts/c/nrf52840-dk.elf" and c["sha256"] and c["latency_kind"] == "counted"
    assert 0 < c["ram_bytes"] <= report["budgets"]["ram_bytes"] and 0 < c["flash_bytes"] <= report["budgets"][
        "flash_bytes"]
    assert c["arena_bytes"] < c["tflm_arena_bytes"] and c["max_diff_vs_host"] == 0
    assert set(report["timings_s"]) >= {"plan", "teacher", "distill", "export", "verify", "package", "total"}
    assert (out / report["bundle"]).is_file() and (out / "report.md").is_file()
    assert (out / "accuracy_vs_size.png").read_bytes()[:4] == b"\x89PNG"
    bundle = (out / report["bundle"]).read_bytes()

    again = build(["nrf52840-dk"], _opts(), out)["reports"][0]
    assert again["skipped_stages"] == ["plan", "teacher", "distill", "export", "verify", "package"]
    assert (out / report["bundle"]).read_bytes() == bundle

    changed = build(["nrf52840-dk"], _opts(epochs=3), out)["reports"][0]
    assert changed["skipped_stages"] == ["plan", "teacher"]  # distill and everything after it reran


def test_several_targets_share_one_teacher(tmp_path: Path) -> None:
    result = build(["nrf52840-dk", "raspberry-pi-4b"], _opts(), tmp_path)
    reports = {r["target"]: r for r in result["reports"]}
    assert set(reports) == {"nrf52840-dk", "raspberry-pi-4b"}
    assert {r["teacher"]["path"] for r in reports.values()} == {result["teacher"]}
    assert Path(result["teacher"]).parent == tmp_path / "teacher"
    pi = {(a["format"], a["precision"]) for a in reports["raspberry-pi-4b"]["artifacts"]}
    assert {("pte", "int8"), ("pte", "fp32"), ("tflite", "int8"), ("tflite", "fp32")} == pi
    # QEMU is installed (scripts/install_emulators.sh), so "auto" ran every Pi artifact on the emulated A72.
    emulated = [a for a in reports["raspberry-pi-4b"]["artifacts"] if a["emulator"]]
    assert {(a["path"].split("/")[-1], a["kernels"]) for a in emulated} == {
        ("model_int8.tflite", "reference"), ("model_int8.tflite", "xnnpack"), ("model_fp32.tflite", "xnnpack"),
        ("model_int8.pte", "xnnpack"), ("model_fp32.pte", "xnnpack")}
    for a in emulated:
        assert a["emulator"] == "qemu-aarch64/cortex-a72" and a["latency_kind"] == "counted"
        assert a["bit_exact_vs_host"] is (None if a["precision"] == "fp32" else True) or a["kernels"] == "xnnpack"
        assert a["max_diff_vs_host"] is not None and a["instructions"] > 0 and a["emulated_samples"] == 100
    assert reports["raspberry-pi-4b"]["gates"]["emulator"]["passed"]
    assert reports["raspberry-pi-4b"]["gates"]["latency"]["kind"] == "counted"
    assert not (tmp_path / "nrf52840-dk" / "teacher").exists()  # trained once, at the top


def test_build_cli_exit_codes(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["build", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--target" in r.output
    r = CliRunner().invoke(main, ["build", "--target", "nrf52840-dk", "--fast", "--epochs", "2", "--family", "dscnn",
                                  "--out", str(tmp_path / "b"), "--latency-budget", "1ms"])
    assert r.exit_code == 2 and "latency" in r.output  # the planner finds nothing that fast: refused up front


def test_all_builds_every_profile_into_one_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import edgekd.build

    seen = {}

    def fake_build(targets, opts, out):
        seen.update(targets=targets, out=out, opts=opts)
        return {"reports": [], "teacher": None}

    monkeypatch.setattr(edgekd.build, "build", fake_build)
    r = CliRunner().invoke(main, ["build", "--all", "--fast", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    from edgekd.targets import load_all

    assert seen["targets"] == [t.name for t in load_all()] and len(seen["targets"]) >= 13
    assert seen["out"] == str(tmp_path) and seen["opts"].fast is True


def test_emulator_choice_per_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.build import resolve_emulator
    from edgekd.targets import load_target

    mcu, pi, esp = (load_target(n) for n in ("nrf52840-dk", "raspberry-pi-4b", "esp32-s3-devkitc-1"))
    assert [resolve_emulator("auto", t) for t in (mcu, pi, esp)] == ["qemu", "qemu", None]
    assert [resolve_emulator("none", t) for t in (mcu, pi, esp)] == [None, None, None]
    assert resolve_emulator("qemu", esp) is None  # no QEMU machine stands in for the ESP32-S3: built without
    monkeypatch.setattr("edgekd.build.shutil.which", lambda name: None)
    assert resolve_emulator("auto", pi) is None and resolve_emulator("qemu", pi) == "qemu"
