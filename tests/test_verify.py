"""Verification on the real runtimes (LiteRT, TFLite Micro, ExecuTorch), per-layer error, gates, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.verify import VerifyRecord, load_verify, sample_indices, verify_build
from edgekd.verify.gates import fidelity_gate
from edgekd.verify.layers import SQNR_CAP_DB, layer_errors, layer_name
from edgekd.verify.litert import quantize, run_litert
from edgekd.verify.tflm import run_tflm


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


@pytest.fixture(scope="module")
def mcu_verified(mcu_build: Path) -> VerifyRecord:
    return verify_build("nrf52840-dk", mcu_build)


def test_mcu_build_runs_on_litert_and_tflite_micro(mcu_verified: VerifyRecord, mcu_build: Path) -> None:
    r = mcu_verified
    runs = {run.runtime: run for run in r.runs}
    assert set(runs) == {"litert", "tflm"}
    assert r.samples.test == r.samples.of > 0  # the whole (limited) test split
    for run in runs.values():
        f = run.fidelity
        assert 0.3 < f.accuracy <= 1 and f.agreement_with_float > 0.8
        assert 0 <= f.mean_abs_err <= f.max_abs_err
        assert set(f.per_class_accuracy) == {str(k) for k in range(10)}
        assert run.latency.median_ms > 0 and run.latency.kind == "measured"
    tflm = runs["tflm"]
    assert tflm.arena_bytes and tflm.run_arena_bytes
    assert 0 < tflm.arena_bytes <= tflm.run_arena_bytes <= 60 * 1024  # ran inside the RAM budget
    assert r.gates["emulator"] is None and r.emulated == []  # no --emulator asked for
    assert r.passed and all(g.passed for g in r.gates.values() if g is not None)
    ram = r.gates["ram"]
    assert ram is not None and ram.value == tflm.arena_bytes + 4 * 1024  # + the profile's runtime RAM
    on_disk = json.loads((mcu_build / "verify.json").read_text())
    assert on_disk["passed"] is True
    # verify.json keeps its keys, and reads back into the same record
    assert load_verify(mcu_build).to_json() == on_disk


def test_tflite_micro_agrees_with_litert_reference_kernels_to_one_step(mcu_build: Path) -> None:
    from edgekd.data import load_task
    from edgekd.export import load_export
    from edgekd.students import to_model_input

    record = load_export(mcu_build)
    tfl = record.artifact("tflite", "int8")
    assert tfl is not None
    x = to_model_input(load_task("digits", limit=400).x_test[:40], record.input_shape).numpy()
    ref = run_litert(mcu_build / tfl.path, x, True, reference=True)
    q = tfl.details.input
    xq = quantize(np.transpose(x, (0, 2, 3, 1)), q.scale, q.zero_point, np.int8)
    out = run_tflm(mcu_build / tfl.path, xq, 64 * 1024)
    o = tfl.details.output
    steps = np.abs(out.outputs.astype(np.int32) - np.round(ref / o.scale + o.zero_point).astype(np.int32))
    # The two runtimes' int8 kernels are separate code: on this fixture's student they agree exactly on all but
    # at most one output step on one output in 400 (seen after the final-epoch rule changed its weights; which
    # kernel rounds differently is not yet pinned down). edgekd's C is checked against TFLite Micro itself.
    assert steps.max() <= 1 and np.count_nonzero(steps) <= steps.size // 100


def test_per_layer_error_table_and_plot(mcu_verified: VerifyRecord, mcu_build: Path) -> None:
    layers = mcu_verified.layers
    assert [ly.op for ly in layers][-1] == "FULLY_CONNECTED" and len(layers) >= 4
    assert all(0 < ly.sqnr_db <= SQNR_CAP_DB for ly in layers)
    assert layers[0].name.startswith("stem")
    png = mcu_build / str(mcu_verified.layers_plot)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_identical_models_have_no_layer_error(mcu_build: Path) -> None:
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)
    rows = layer_errors(mcu_build / "model_int8.tflite", mcu_build / "model_int8.tflite", x)
    assert rows and all(r.sqnr_db == SQNR_CAP_DB and r.max_abs_err == 0 for r in rows)


def test_layer_names_are_module_paths() -> None:
    name = ("litert_torch._convert.to_channel_last_io.ChannelLastIOWrapper/edgekd.students.resnet.SmallResNet_wrapped/"
            "torch.nn.modules.container.Sequential_body/edgekd.students.resnet.BasicBlock_2/"
            "edgekd.students.ConvBNReLU_conv1/torch.nn.modules.activation.ReLU_2;;other")
    assert layer_name(name) == "body.2.conv1.2"
    assert layer_name("serving_default_output_0_output") == "output"


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_linux_build_runs_pte_on_executorch(pi_build: Path) -> None:
    r = verify_build("raspberry-pi-4b", pi_build, max_drop_pp=2.0, limit=60)  # one sample of 60 is 1.67 pp
    assert r.samples.test == 60
    runs = {(run.artifact, run.runtime): run.to_json() for run in r.runs}
    assert set(runs) == {("model_int8.tflite", "litert"), ("model_fp32.tflite", "litert"),
                         ("model_int8.pte", "executorch"), ("model_fp32.pte", "executorch")}
    assert runs[("model_fp32.pte", "executorch")]["max_abs_err"] < 1e-3
    assert runs[("model_fp32.tflite", "litert")]["max_abs_err"] < 1e-3
    assert runs[("model_int8.pte", "executorch")]["agreement_with_float"] > 0.85
    assert runs[("model_int8.pte", "executorch")]["planned_memory_bytes"] > 0
    assert r.passed, {k: g.detail for k, g in r.gates.items() if g is not None and not g.passed}


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_verify_exit_codes(mcu_build: Path, tmp_path: Path) -> None:
    ok = CliRunner().invoke(main, ["verify", "--target", "nrf52840-dk", str(mcu_build), "--limit", "30"])
    assert ok.exit_code == 0, ok.output
    assert "gate ram      PASS" in ok.output
    tight = CliRunner().invoke(main, ["verify", "--target", "nrf52840-dk", str(mcu_build), "--limit", "30",
                                      "--ram-budget", "8KiB", "--latency-budget", "0.01ms", "--json"])
    assert tight.exit_code == 1
    record = json.loads(tight.output[tight.output.index("{"):])
    assert record["gates"]["ram"]["passed"] is False and record["gates"]["latency"]["passed"] is False
    assert record["gates"]["flash"]["passed"] is True and record["passed"] is False
    missing = CliRunner().invoke(main, ["verify", "--target", "nrf52840-dk", str(tmp_path)])
    assert missing.exit_code == 2 and "no export.json" in missing.output


def test_a_tampered_artifact_is_refused(mcu_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "b"
    shutil.copytree(mcu_build, build)
    data = bytearray((build / "model_int8.tflite").read_bytes())
    data[-10] ^= 0xFF
    (build / "model_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(EdgekdError, match="sha256 differs from export.json"):
        verify_build("nrf52840-dk", build)


def test_fidelity_gate_points_to_qat() -> None:
    from edgekd.verify.records import Fidelity, Latency, RuntimeRun

    runs = [RuntimeRun("model_int8.tflite", "tflite", "int8", "tflm", "reference", 1,
                       Fidelity(0.88, 0.9, 0.1, 0.01, {}), Latency(1.0, 1.0, "measured", "host"))]
    gate = fidelity_gate(runs, 0.90, 1.0, qat=False)
    assert not gate.passed and gate.value == pytest.approx(2.0) and "--qat" in gate.detail
    assert fidelity_gate(runs, 0.90, 1.0, qat=True).detail.count("--qat") == 0
    assert fidelity_gate(runs, 0.885, 1.0, qat=False).passed


def test_sample_indices_are_even_and_cover_the_set() -> None:
    idx = sample_indices(1000, 5)
    assert list(idx) == [0, 250, 500, 749, 999]
    assert len(sample_indices(10, None)) == 10 and len(sample_indices(10, 50)) == 10
