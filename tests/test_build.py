"""`edgekd build`: the stage pipeline, skipping unchanged stages, report.json's schema, shared teachers."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

import edgekd.build.context
from edgekd.build import STAGES, BuildOptions, BuildResult, Stages, build_many
from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.io import sha256_file

ROOT = Path(__file__).resolve().parent.parent

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


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_fast_build_writes_the_report_schema_and_skips_unchanged_stages(tmp_path: Path) -> None:
    out = tmp_path / "b"
    r = build_many(["nrf52840-dk"], _opts(), out).reports[0].to_json()
    report = json.loads((out / "report.json").read_text())
    assert set(report) >= REPORT_KEYS and report == json.loads(json.dumps(r))
    assert set(report["teacher"]) >= {"params", "accuracy"} and report["teacher"]["params"] > 0
    assert set(report["student"]) >= {"family", "config", "params", "macs", "accuracy_float", "accuracy_no_teacher"}
    assert report["student"]["accuracy_no_teacher"] is None
    assert set(report["budgets"]) == {"flash_bytes", "ram_bytes", "latency_ms"}
    assert set(report["gates"]) == {"flash", "ram", "latency", "fidelity", "emulator", "accuracy"}
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

    again = build_many(["nrf52840-dk"], _opts(), out).reports[0].to_json()
    assert again["skipped_stages"] == ["plan", "teacher", "distill", "export", "verify", "package"]
    assert (out / report["bundle"]).read_bytes() == bundle

    changed = build_many(["nrf52840-dk"], _opts(epochs=3), out).reports[0].to_json()
    assert changed["skipped_stages"] == ["plan", "teacher"]  # distill and everything after it reran


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
@pytest.mark.heavy
def test_several_targets_share_one_teacher(tmp_path: Path) -> None:
    result = build_many(["nrf52840-dk", "raspberry-pi-4b"], _opts(), tmp_path).to_json()
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
        return BuildResult([])

    monkeypatch.setattr(edgekd.build, "build_many", fake_build)
    r = CliRunner().invoke(main, ["build", "--all", "--fast", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    from edgekd.targets import load_all

    assert seen["targets"] == [t.name for t in load_all()] and len(seen["targets"]) >= 13
    assert seen["out"] == str(tmp_path) and seen["opts"].fast is True


def test_emulator_choice_per_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.build.context import resolve_emulator
    from edgekd.targets import load_target

    mcu, pi, esp = (load_target(n) for n in ("nrf52840-dk", "raspberry-pi-4b", "esp32-s3-devkitc-1"))
    assert [resolve_emulator("auto", t) for t in (mcu, pi, esp)] == ["qemu", "qemu", None]
    assert [resolve_emulator("none", t) for t in (mcu, pi, esp)] == [None, None, None]
    assert resolve_emulator("qemu", esp) is None  # no QEMU machine stands in for the ESP32-S3: built without
    monkeypatch.setattr("edgekd.build.context.shutil.which", lambda name: None)
    assert resolve_emulator("auto", pi) is None
    with pytest.raises(EdgekdError, match="--emulator qemu: qemu-aarch64 is not installed; run "
                                          "scripts/install_emulators.sh or use --emulator auto"):
        resolve_emulator("qemu", pi)


def test_emulator_qemu_without_qemu_is_refused_before_any_training(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setattr("edgekd.build.context.shutil.which", lambda name: None)
    with pytest.raises(EdgekdError, match="--emulator qemu: qemu-system-arm, arm-none-eabi-gcc are not installed"):
        build_many(["nrf52840-dk", "raspberry-pi-4b"], _opts(emulator="qemu"), tmp_path / "b")
    assert not (tmp_path / "b").exists()  # refused before the teacher, the plan or the folder
    r = CliRunner().invoke(main, ["build", "--target", "raspberry-pi-4b", "--emulator", "qemu", "--fast",
                                  "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "qemu-aarch64 is not installed" in r.output and "Traceback" not in r.output


def test_an_unwritable_out_is_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(EdgekdError, match="--out .*a-file/b: cannot write there"):
        build_many(["nrf52840-dk"], _opts(), blocker / "b")
    with pytest.raises(EdgekdError, match="exists and is not a folder"):
        build_many(["nrf52840-dk"], _opts(), blocker)


# ------------------------------------------------------------------ trust: one real build, tampered copies

BOARD_FLAGS = ["--fast", "--epochs", "4", "--family", "dscnn", "--emulator", "none"]  # 2 epochs can end at chance: gate


@pytest.fixture(scope="module")
def board_build(tmp_path_factory: pytest.TempPathFactory, warm_cost_cache: Path) -> Iterator[dict]:
    """One real ``edgekd build --fast --emulator none`` (digits) of a profile that lives outside targets/ under its
    own file name (``--target path/my-board.yaml``, no ``--out``), run from a scratch working folder.

    The tamper tests below rebuild copies of it, so the ~30 s build is paid once per module.
    """
    root = tmp_path_factory.mktemp("board")
    profile = root / "profiles" / "my-board.yaml"
    profile.parent.mkdir()
    profile.write_text((ROOT / "targets" / "nrf52840-dk.yaml").read_text().replace("name: nrf52840-dk",
                                                                                 "name: my-board"))
    with pytest.MonkeyPatch.context() as mp:
        # Every stage's key holds the hash of edgekd's sources; pin it so that an edit to the working tree while
        # this module runs does not make every rebuild below start from scratch.
        code = edgekd.build.context.code_hash()
        mp.setattr(edgekd.build.context, "code_hash", lambda: code)
        cache = root / "cache"
        shutil.copytree(warm_cost_cache, cache)
        mp.setenv("EDGEKD_CACHE", str(cache))
        mp.chdir(root)
        r = CliRunner().invoke(main, ["build", "--target", str(profile), *BOARD_FLAGS])
        yield {"root": root, "profile": profile, "out": root / "builds" / "my-board", "result": r}


def _copy(board_build: dict, tmp_path: Path) -> Path:
    """A private copy of the module's build (in another folder: recorded paths are relative, so it skips)."""
    out = tmp_path / "b"
    shutil.copytree(board_build["out"], out)
    return out


def _rebuild(board_build: dict, out: Path) -> dict:
    """The fixture's build again, as the library call (same options as BOARD_FLAGS)."""
    opts = BuildOptions(fast=True, epochs=4, families=["dscnn"], emulator="none", progress=False)
    return build_many([str(board_build["profile"])], opts, out).reports[0].to_json()


def _report_matches_files(out: Path) -> None:
    report = json.loads((out / "report.json").read_text())
    for a in report["artifacts"]:
        if a["sha256"]:
            assert sha256_file(out / a["path"]) == a["sha256"], a["path"]


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_a_profile_outside_targets_builds_into_builds_its_name(board_build: dict) -> None:
    r = board_build["result"]
    assert r.exit_code == 0, r.output
    assert "unknown target" not in r.output and "my-board: PASS" in r.output
    out = board_build["out"]
    assert "report: builds/my-board/report.md" in r.output
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "my-board" and report["bundle"] == "edgekd-my-board-digits.tar.gz"
    assert (out / report["bundle"]).is_file() and (out / "accuracy_vs_size.png").is_file()
    assert not (board_build["root"] / "builds" / ".").joinpath("my-board.yaml").exists()
    _report_matches_files(out)


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_an_untouched_moved_build_skips_every_stage(board_build: dict, tmp_path: Path) -> None:
    out = _copy(board_build, tmp_path)
    assert _rebuild(board_build, out)["skipped_stages"] == list(STAGES)
    _report_matches_files(out)


@pytest.mark.parametrize(("name", "tamper"), [
    ("model_int8.tflite", lambda b: b[:-10] + bytes([b[-10] ^ 0xFF]) + b[-9:]),
    ("model_data.c", lambda b: b""),
])
@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_a_changed_artifact_reruns_export_and_what_follows(board_build: dict, tmp_path: Path, name: str, tamper,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    out = _copy(board_build, tmp_path)
    path = out / "artifacts" / name
    original = path.read_bytes()
    path.write_bytes(tamper(original))
    with caplog.at_level(logging.INFO, logger="edgekd"):
        report = _rebuild(board_build, out)
    assert f"stage export: artifacts/{name} changed since it was written; re-running" in caplog.messages
    assert report["skipped_stages"] == ["plan", "teacher", "distill"]  # export, verify and package reran
    assert path.read_bytes() == original  # export is deterministic: the same bytes again
    _report_matches_files(out)
    assert _rebuild(board_build, out)["skipped_stages"] == list(STAGES)


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_a_changed_verify_output_reruns_verify_and_package(board_build: dict, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    out = _copy(board_build, tmp_path)
    (out / "artifacts" / "layers.png").write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="edgekd"):
        report = _rebuild(board_build, out)
    assert "stage verify: artifacts/layers.png changed since it was written; re-running" in caplog.messages
    assert report["skipped_stages"] == ["plan", "teacher", "distill", "export"]
    assert (out / "artifacts" / "layers.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_a_truncated_stages_json_rebuilds_without_a_traceback(board_build: dict, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    out = _copy(board_build, tmp_path)
    text = (out / "stages.json").read_text()
    (out / "stages.json").write_text(text[: len(text) // 2])
    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.WARNING, logger="edgekd"):
        mp.setenv("EDGEKD_CACHE", str(board_build["root"] / "cache"))
        r = CliRunner().invoke(main, ["build", "--target", str(board_build["profile"]), *BOARD_FLAGS, "--out",
                                      str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert any("stages.json: the stage record is not valid JSON" in m and "rebuilding every stage" in m
               for m in caplog.messages)
    assert json.loads(r.output[r.output.index("{"):])["reports"][0]["skipped_stages"] == []
    assert json.loads((out / "stages.json").read_text()).keys() == set(STAGES)
    _report_matches_files(out)


@pytest.mark.parametrize("content", [b'{"plan": {"key": "k"', b"[1, 2]", b'{"plan": {"key": "k", "run": "r"}}',
                                     b'{"plan": {"key": "k", "run": "r", "outputs": {"plan.json": 3}}}', b"\xff\xfe",
                                     b""])
def test_a_damaged_stage_record_means_rebuild_with_a_warning(tmp_path: Path, content: bytes,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "stages.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="edgekd"):
        stages = Stages(tmp_path)
    assert stages.state == {} and any("rebuilding every stage" in m for m in caplog.messages)
    ran = []
    stages.run("plan", {"a": 1}, [tmp_path / "plan.json"],
               lambda: (ran.append(1), (tmp_path / "plan.json").write_text("{}")))
    assert ran == [1]
    assert Stages(tmp_path).state["plan"]["outputs"] == {"plan.json": sha256_file(tmp_path / "plan.json")}


# ------------------------------------------------------------------ one run per folder

@contextmanager
def _held(folder: Path) -> Iterator[None]:
    """Another process holding ``folder``'s FolderLock, as a concurrent edgekd run does."""
    code = ("import sys\nfrom edgekd.io import FolderLock\nwith FolderLock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_a_second_run_into_a_busy_folder_is_refused(board_build: dict, tmp_path: Path) -> None:
    from edgekd.export import export_student
    from edgekd.verify import verify_build

    out = _copy(board_build, tmp_path)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".edgekd.lock"}
    with _held(out):
        with pytest.raises(EdgekdError, match=f"--out {out} is in use by another edgekd run"):
            _rebuild(board_build, out)
        r = CliRunner().invoke(main, ["build", "--target", str(board_build["profile"]), "--fast", "--out", str(out)])
        assert r.exit_code == 2 and "is in use by another edgekd run" in r.output and "Traceback" not in r.output
    with _held(out / "artifacts"):
        with pytest.raises(EdgekdError, match="--out .* is in use by another edgekd run"):
            export_student(str(board_build["profile"]), out / "student", out / "artifacts")
        with pytest.raises(EdgekdError, match="BUILD .* is in use by another edgekd run"):
            verify_build(str(board_build["profile"]), out / "artifacts")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".edgekd.lock"}
    assert after == before
    assert _rebuild(board_build, out)["skipped_stages"] == list(STAGES)  # the lock is gone with its process


# ------------------------------------------------------------------ teachers, shipping and the accuracy gate

CONSTANT_TEACHER = """
import torch
from torch import nn

class Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))
    def forward(self, x):
        return self.bias.expand(len(x), 10)

def constant():
    return Constant()
"""


def test_build_takes_teacher_weights_and_refuses_a_chance_level_teacher(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    (tmp_path / "const_build_teacher.py").write_text(CONSTANT_TEACHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    state = {"bias": torch.tensor([4.0] + [0.0] * 9)}  # always class 0: 10% on digits
    torch.save(state, tmp_path / "w.pt")
    args = ["build", "--target", "nrf52840-dk", "--task", "digits", "--fast", "--epochs", "1", "--family", "dscnn",
            "--emulator", "none", "--out", str(tmp_path / "b")]
    r = CliRunner().invoke(main, [*args, "--teacher", "const_build_teacher:constant", "--teacher-weights",
                                  str(tmp_path / "w.pt")])
    assert r.exit_code == 2, r.output
    assert "chance level" in r.output and "--allow-weak-teacher" in r.output
    assert not (tmp_path / "b" / "report.json").exists()
    r = CliRunner().invoke(main, [*args, "--teacher-weights", str(tmp_path / "w.pt")])
    assert r.exit_code == 2 and "give that factory too" in r.output
    with pytest.raises(EdgekdError, match="fraction"):
        BuildOptions(min_accuracy=90.0)


def test_accuracy_gate_fails_at_chance_and_below_the_bar() -> None:
    import numpy as np

    from edgekd.verify.gates import accuracy_gate

    y = np.repeat(np.arange(10), 30)  # balanced: chance 10%, bar 10% + max(2, 3 * 1.73) pp
    at_chance = accuracy_gate([], 0.10, y, 10)
    assert not at_chance.passed and "learnt nothing" in at_chance.detail
    assert at_chance.budget == pytest.approx(0.152, abs=1e-3)
    assert accuracy_gate([], 0.60, y, 10).passed
    high = accuracy_gate([], 0.60, y, 10, min_accuracy=0.9)
    assert not high.passed and high.budget == 0.9 and "required 90.00%" in high.detail
    assert accuracy_gate([], 0.95, y, 10, min_accuracy=0.9).passed
    assert not accuracy_gate([], 0.12, y, 10, min_accuracy=0.05).passed  # a bar below chance never passes chance


def test_report_says_which_student_was_shipped_and_why() -> None:
    from edgekd.build.report import Report

    report = object.__new__(Report)
    report.distillation = {
        "shipped": {"shipped": "no-teacher", "reason": "the no-teacher twin is better (95.10% vs 92.30%)",
                    "distilled": {"loss": "kd", "val_accuracy": 0.923, "test_float": 0.92, "test_int8": 0.918},
                    "no_teacher": {"loss": "ce", "val_accuracy": 0.951, "test_float": 0.95, "test_int8": 0.949}},
        "unlabelled": {"samples": 1094, "used": 1094, "sources": ["training split without labels"]},
        "teacher_check": {"warning": "the teacher (89.00% on validation) is not better than the twin"}}
    text = "\n".join(report.distillation_lines())
    assert "Shipped: the **no-teacher** student: the no-teacher twin is better" in text
    assert "| distilled (kd) | 92.30% | 92.00% | 91.80% |" in text
    assert "| no-teacher (ce) | 95.10% | 95.00% | 94.90% |" in text
    assert "Unlabelled samples: 1,094 used of 1,094" in text and "Warning: the teacher" in text
    report.distillation = None
    assert report.distillation_lines() == []


@pytest.mark.slow  # a real build: minutes on 2 cores
def test_label_scarce_build_with_baseline_reports_both_students(tmp_path: Path) -> None:
    out = tmp_path / "b"
    opts = _opts(labels=200, baseline=True, emulator="none", epochs=10)  # 2 epochs of 200 labels: at chance
    r = build_many(["nrf52840-dk"], opts, out).reports[0].to_json()
    shipped = r["distillation"]["shipped"]
    assert shipped["shipped"] in ("distilled", "no-teacher") and shipped["reason"]
    assert 0 < shipped["distilled"]["test_int8"] <= 1 and 0 < shipped["no_teacher"]["test_int8"] <= 1
    assert r["distillation"]["unlabelled"]["used"] == r["distillation"]["unlabelled"]["samples"] > 0
    assert r["gates"]["accuracy"]["passed"] is True, r["gates"]["accuracy"]["detail"]
    md = (out / "report.md").read_text()
    assert "Shipped: the **" in md and "Unlabelled samples:" in md


def test_report_lifts_an_emulated_runs_typed_details_under_the_old_keys(tmp_path: Path) -> None:
    """report.json's emulated entries: a board build's sizes and the CPI source come from the emulator's typed
    details, under the keys report.json had when details were dicts (issue 13: extend, never rename)."""
    from types import SimpleNamespace

    from emulated_runs import AARCH64_RUN, CORTEX_M_RUN

    from edgekd.build.context import BuildLayout
    from edgekd.build.report import _emulated_entry
    from edgekd.emulate import EmulatedRun

    layout = BuildLayout(tmp_path)
    est = {"int8": SimpleNamespace(ms=3.0, kind="estimated", method="MACs x throughput")}
    m = _emulated_entry(EmulatedRun.from_json(CORTEX_M_RUN), {}, est, layout)
    assert {k: m[k] for k in ("flash_bytes", "ram_bytes", "tflm_arena_bytes", "arena_bytes", "stack_bytes")} == \
        {"flash_bytes": 60000, "ram_bytes": 7000, "tflm_arena_bytes": 9000, "arena_bytes": 4096, "stack_bytes": 800}
    assert m["latency_kind"] == "counted" and m["latency_ms"] == 2.8125
    assert "(edgekd.emulate.timing_m) at the profile" in m["latency_method"]
    a = _emulated_entry(EmulatedRun.from_json(AARCH64_RUN), {}, est, layout)
    assert a["arena_bytes"] is None and "flash_bytes" not in a
    assert "(edgekd.emulate.timing_a) at the profile" in a["latency_method"]
    failed = _emulated_entry(EmulatedRun.from_json(CORTEX_M_RUN | {"ok": False, "instructions": None,
                                                                   "counted_ms": None, "details": {}}), {}, est, layout)
    assert failed["arena_bytes"] is None and failed["latency_kind"] == "estimated" and failed["latency_ms"] == 3.0
