"""The `edgekd` command line: JSON shapes, exit codes (0 ok, 2 bad input with one line on stderr), budget
overrides, and `cost` agreeing with the library. Runs from an empty directory with its own cost cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import edgekd.targets as targets
from edgekd.cli import main
from edgekd.costmodel import analyze
from edgekd.students import StudentConfig, build_student, model_input_shape

EDGEKD = Path(sys.executable).parent / "edgekd"
BUNDLED_TARGETS = Path(targets.__file__).resolve().parent.parent / "targets"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cost_cache: Path) -> Path:
    """An empty working directory, no user target directories, this test's own EDGEKD_CACHE."""
    monkeypatch.delenv("EDGEKD_TARGETS", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), f"crashed: {result.exception!r}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("edgekd: error: ")
    return lines[0]


# ---------------------------------------------------------------- targets

def test_targets_list_json():
    result = run("targets", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and len(rows) >= 12
    names = [r["name"] for r in rows]
    assert len(set(names)) == len(names) and {"nrf52840-dk", "google-pixel-8", "raspberry-pi-4b"} <= set(names)
    assert {r["class"] for r in rows} == {"mcu", "sbc", "phone"}
    nrf = next(r for r in rows if r["name"] == "nrf52840-dk")
    assert nrf["class"] == "mcu" and nrf["budgets"] == {"flash_bytes": 262144, "ram_bytes": 65536,
                                                         "latency_ms": 200.0}
    mcus = json.loads(run("targets", "list", "--class", "mcu", "--json").stdout)
    assert len(mcus) >= 6 and {r["class"] for r in mcus} == {"mcu"}


def test_targets_list_table():
    result = run("targets", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["name", "class"] and len(lines) >= 13
    assert any(line.startswith("nrf52840-dk") and "64.0 KiB" in line for line in lines)


def test_targets_show_json():
    result = run("targets", "show", "nrf52840-dk", "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["name"] == "nrf52840-dk" and d["class"] == "mcu" and "klass" not in d
    assert d["cpu"]["clock_mhz"] == 64 and d["memory"]["ram_bytes"] == 256 * 1024
    assert d["budgets"] == {"flash_bytes": 262144, "ram_bytes": 65536, "latency_ms": 200.0}
    assert "MEAN" in d["operators"] and d["quantization"] == "int8-full"
    assert d["path"].endswith("nrf52840-dk.yaml")
    text = run("targets", "show", "nrf52840-dk")
    assert text.exit_code == 0 and text.stdout.startswith("nrf52840-dk: ")


def test_targets_show_unknown_is_one_line_exit_2():
    line = one_line_error(run("targets", "show", "nope"))
    assert "unknown target 'nope'" in line and "targets list" in line


def test_targets_validate(tmp_path: Path):
    data = yaml.safe_load((BUNDLED_TARGETS / "nrf52840-dk.yaml").read_text())
    good = tmp_path / "nrf52840-dk.yaml"
    good.write_text(yaml.safe_dump(data))
    ok = run("targets", "validate", str(good))
    assert ok.exit_code == 0 and "valid (nrf52840-dk, mcu)" in ok.stdout
    ok_json = json.loads(run("targets", "validate", str(good), "--json").stdout)
    assert ok_json == {"file": str(good), "valid": True, "name": "nrf52840-dk", "class": "mcu"}

    data["cpu"]["clock_mhz"] = 0
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = bad_dir / "nrf52840-dk.yaml"
    bad.write_text(yaml.safe_dump(data))
    line = one_line_error(run("targets", "validate", str(bad)))
    assert f"{bad}: cpu.clock_mhz: must be > 0" in line
    result = run("targets", "validate", str(bad), "--json")
    assert result.exit_code == 2 and json.loads(result.stdout)["valid"] is False

    line = one_line_error(run("targets", "validate", str(tmp_path / "missing.yaml")))
    assert "no such target file" in line


# ---------------------------------------------------------------- plan

def test_plan_json():
    result = run("plan", "--target", "nrf52840-dk", "--task", "digits", "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert {"target", "task", "student", "predicted", "budgets", "fits", "candidates"} <= set(d)
    assert d["fits"] is True and d["target"] == "nrf52840-dk" and d["task"] == "digits"
    assert set(d["student"]) == {"family", "config", "params", "macs"}
    assert set(d["predicted"]) == {"flash_bytes", "ram_bytes", "latency_ms"}
    assert d["budgets"] == {"flash_bytes": 262144, "ram_bytes": 65536, "latency_ms": 200.0}
    for key in ("flash_bytes", "ram_bytes", "latency_ms"):
        assert d["predicted"][key] <= d["budgets"][key]
    assert len(d["candidates"]) == 6  # the student and --top 5 runners-up
    assert d["candidates"][0]["macs"] == d["student"]["macs"] == max(
        c["macs"] for c in d["candidates"] if c["fits"])


def test_plan_text():
    result = run("plan", "--target", "nrf52840-dk", "--task", "digits", "--top", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("target nrf52840-dk (mcu), task digits (1, 8, 8), int8 tensors")
    assert lines[1].startswith("student: ") and "(estimated)" in result.stdout
    assert lines[-3] == "runners-up:"
    runners = lines[lines.index("runners-up:") + 1:]
    assert len(runners) == 2 and all(r.startswith("  ") and " MACs " in r and r.endswith("ms") for r in runners)


def test_plan_tiny_ram_budget_exit_2_naming_ram():
    result = run("plan", "--target", "nrf52840-dk", "--task", "digits", "--ram-budget", "1KB")
    line = one_line_error(result)
    assert "RAM" in line and "over by" in line and "budget 1000 B" in line


def test_plan_tiny_ram_budget_json_still_explains():
    result = run("plan", "--target", "nrf52840-dk", "--task", "digits", "--ram-budget", "1KB", "--json")
    assert result.exit_code == 2
    d = json.loads(result.stdout)
    assert d["fits"] is False and d["student"] is None and "over by" in d["error"]


def test_plan_ram_budget_override_in_json():
    result = run("plan", "--target", "nrf52840-dk", "--task", "digits", "--ram-budget", "64KB", "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["budgets"]["ram_bytes"] == 64000 and d["predicted"]["ram_bytes"] <= 64000
    binary = json.loads(run("plan", "--target", "nrf52840-dk", "--ram-budget", "32KiB", "--json").stdout)
    assert binary["budgets"]["ram_bytes"] == 32768 and binary["task"] == "digits"  # digits is the default task


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--ram-budget", "64XB", "--ram-budget: cannot read size '64XB'"),
    ("--ram-budget", "1GiB", "--ram-budget: 1.0 GiB is more than nrf52840-dk's 256.0 KiB of RAM"),
    ("--latency-budget", "5 min", "--latency-budget: unknown time unit"),
])
def test_plan_bad_budget_exit_2(flag, value, expected):
    line = one_line_error(run("plan", "--target", "nrf52840-dk", flag, value))
    assert expected in line


def test_plan_unknown_target_or_task_exit_2():
    assert "unknown target 'nope'" in one_line_error(run("plan", "--target", "nope"))
    assert "unknown task 'cifar10'" in one_line_error(run("plan", "--target", "nrf52840-dk", "--task", "cifar10"))


def test_fashion_mnist_without_files_says_how_to_install(tmp_path: Path):
    """The library refuses to load Fashion-MNIST from a folder without the IDX files, saying how to install."""
    from edgekd.data import load_task
    from edgekd.errors import EdgekdError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgekdError, match="apt-get install dataset-fashion-mnist") as info:
        load_task("fashion-mnist", data_dir=str(empty))
    assert "--data-dir" in str(info.value) and "\n" not in str(info.value)


def test_plan_fashion_mnist_with_empty_data_dir_exit_2(tmp_path: Path):
    """An explicit --data-dir with no Fashion-MNIST files in it is bad input, caught before planning.

    Bug (edgekd/cli/design.py, plan_cmd / _task_option): only get_spec() is called, which by design reads no data,
    so a wrong --data-dir is silently accepted and a plan printed.
    """
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("plan", "--target", "nrf52840-dk", "--task", "fashion-mnist", "--data-dir", str(empty),
                 "--family", "mlp")
    line = one_line_error(result)
    assert "apt-get install dataset-fashion-mnist" in line and "--data-dir" in line


# ---------------------------------------------------------------- cost

def test_cost_json_matches_the_library():
    result = run("cost", "--family", "dscnn", "--config", "width=8,depth=2", "--task", "digits", "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["family"] == "dscnn" and d["task"] == "digits" and d["latency"] is None
    assert d["config"] == {"width": 8, "depth": 2, "resolution": None}
    model = build_student(StudentConfig("dscnn", {"width": 8, "depth": 2, "resolution": None}), (1, 8, 8), 10)
    report = analyze(model, model_input_shape(model), "int8", channels_last_input=True)
    cost = d["cost"]
    assert (cost["params"], cost["macs"]) == (report.params, report.macs)
    assert (cost["arena_bytes"], cost["tflite_bytes"]) == (report.arena_bytes, report.tflite_bytes)
    assert cost["ops"] == report.ops and len(cost["layers"]) == len(report.layers)
    assert cost["macs"] == sum(layer["macs"] for layer in cost["layers"])


def test_cost_with_target_and_fp32():
    result = run("cost", "--family", "mlp", "--config", "width=32,depth=1", "--target", "nrf52840-dk",
                 "--dtype", "fp32", "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["cost"]["dtype"] == "fp32" and d["latency"]["kind"] == "estimated"
    macs = 64 * 32 + 32 * 10
    assert d["cost"]["macs"] == macs
    assert d["latency"]["floor_ms"] == pytest.approx(macs / (1.0 * 64e6) * 1e3, abs=1e-4)  # fp32 peak 1/cycle
    text = run("cost", "--family", "mlp", "--config", "width=32,depth=1", "--target", "nrf52840-dk")
    assert text.exit_code == 0 and "latency" in text.stdout and "(estimated;" in text.stdout


def test_cost_unknown_parameter_exit_2():
    line = one_line_error(run("cost", "--family", "dscnn", "--config", "nope=1"))
    assert "--config: dscnn has no parameter 'nope'" in line and "width" in line
    assert "unknown student family 'nope'" in one_line_error(run("cost", "--family", "nope"))


@pytest.mark.parametrize("config", ["width=abc", "width", "width=0"])
def test_cost_bad_parameter_value_exit_2(config):
    """A bad value is bad input: one line and exit 2, not a traceback.

    Bug (edgekd/cli/design.py, cost_cmd): int('abc') raises ValueError, 'width' alone becomes None and int(None)
    raises TypeError in the family, and width=0 makes torch raise ValueError; none is an EdgekdError.
    """
    line = one_line_error(run("cost", "--family", "dscnn", "--config", config))
    assert "width" in line


# ---------------------------------------------------------------- the error contract

def test_click_usage_errors_are_one_line_exit_2():
    line = one_line_error(run("plan"))
    assert "Missing option '--target'" in line and "edgekd plan -h" in line
    assert "No such command" in one_line_error(run("no-such-verb"))
    assert "--epochs" in one_line_error(run("teacher", "--out", "t.pt", "--epochs", "zero"))


def test_internal_error_is_exit_3_with_a_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A bug (not bad input) is one line naming a log that holds the traceback; -v prints it as well."""
    import edgekd.targets

    def broken(*args, **kwargs):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(edgekd.targets, "load_all", broken)
    monkeypatch.setenv("EDGEKD_LOG_DIR", str(tmp_path / "logs"))
    line = one_line_error(run("targets", "list"), code=3)
    assert "internal error (ZeroDivisionError: simulated bug), details in " in line
    log_file = Path(line.split("details in ")[1].split(";")[0])
    assert log_file.parent == tmp_path / "logs"
    text = log_file.read_text()
    assert "Traceback" in text and "raise ZeroDivisionError" in text and "targets list" in text
    verbose = run("-v", "targets", "list")
    assert verbose.exit_code == 3 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("edgekd: error: internal error")


def test_disk_full_is_bad_input_not_a_bug(monkeypatch: pytest.MonkeyPatch):
    import errno

    import edgekd.targets

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/model.tflite")

    monkeypatch.setattr(edgekd.targets, "load_all", full)
    line = one_line_error(run("targets", "list"))
    assert line == "edgekd: error: /data/out/model.tflite: the disk is full; free space or choose another --out"


# ---------------------------------------------------------------- real process exit codes

def test_real_exit_codes_from_the_installed_command(cost_cache: Path, tmp_path: Path):
    env = {**os.environ, "EDGEKD_CACHE": str(cost_cache)}
    env.pop("EDGEKD_TARGETS", None)
    ok = subprocess.run([str(EDGEKD), "targets", "list", "--json"], capture_output=True, text=True, env=env,
                        timeout=120)
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) >= 12
    bad = subprocess.run([str(EDGEKD), "targets", "show", "nope"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "unknown target 'nope'" in bad.stderr
    no_fit = subprocess.run([str(EDGEKD), "plan", "--target", "nrf52840-dk", "--ram-budget", "1KB"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert no_fit.returncode == 2 and "over by" in no_fit.stderr
    assert len(no_fit.stderr.strip().splitlines()) == 1
