"""Budget planner: the most capable fitting student, refusals with reasons, budget overrides, the JSON form and
the on-disk cost cache (EDGEKD_CACHE points at a per-test directory, see conftest.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from edgekd.costmodel import analyze
from edgekd.data import get_spec
from edgekd.errors import EdgekdError
from edgekd.planner import Plan, explain_no_fit, plan
from edgekd.students import FAMILIES, StudentConfig, build_student, model_input_shape
from edgekd.targets import load_target
from edgekd.units import format_bytes

KIB = 1024
WHOLE_MODEL_ERR_PCT = 10.0  # calibrated estimate vs the counted invoke (docs/cost_check.json)
LAYER_ERR_PCT = 30.0


@pytest.fixture(autouse=True)
def _own_cache(cost_cache: Path) -> Path:
    """Every test plans against its own copy of the warm digits cost cache."""
    return cost_cache


@pytest.fixture(scope="module")
def nrf():
    return load_target("nrf52840-dk")


@pytest.fixture(scope="module")
def digits():
    return get_spec("digits")


def check_budgets(c, budgets: dict) -> None:
    for key in ("flash_bytes", "ram_bytes", "latency_ms"):
        assert c.predicted[key] <= budgets[key], (c.label(), key)


def test_plan_digits_on_nrf52840_picks_the_largest_fitting_student(nrf, digits):
    p = plan(nrf, digits)
    assert isinstance(p, Plan) and p.fits and p.dtype == "int8"
    assert (p.target, p.task) == ("nrf52840-dk", "digits")
    assert p.budgets == {"flash_bytes": 256 * KIB, "ram_bytes": 64 * KIB, "latency_ms": 200.0}
    assert len(p.candidates) == 7 * 5 + 5 * 2 * 2 + 5 * 3  # dscnn, resnet, mlp at 8x8: no lower resolutions
    best = p.student
    assert best is p.candidates[0] and best.fits and not best.over and best.unsupported_ops == []
    check_budgets(best, p.budgets)
    fitting = [c for c in p.candidates if c.fits]
    assert best.macs == max(c.macs for c in fitting)
    assert not [c for c in fitting if (c.macs, c.params) > (best.macs, best.params)]
    # ranking: every fitting candidate first, by MACs descending
    assert [c.fits for c in p.candidates] == sorted((c.fits for c in p.candidates), reverse=True)
    assert [c.macs for c in fitting] == sorted((c.macs for c in fitting), reverse=True)
    for c in p.candidates:  # fits <=> nothing over and every operator supported; over = predicted - budget
        assert c.fits == (not c.over and not c.unsupported_ops)
        for key, amount in c.over.items():
            assert amount == pytest.approx(c.predicted[key] - p.budgets[key], abs=1e-3)
        if c.fits:
            check_budgets(c, p.budgets)


def test_predictions_are_the_cost_model_plus_runtime_overheads(nrf, digits):
    best = plan(nrf, digits).student
    torch.manual_seed(0)
    model = build_student(best.student, digits.input_shape, digits.num_classes)
    report = analyze(model, model_input_shape(model), "int8", channels_last_input=model.channels_last_input)
    assert (best.params, best.macs) == (report.params, report.macs)
    assert (nrf.runtime_flash_bytes, nrf.runtime_ram_bytes) == (48 * KIB, 4 * KIB)
    assert best.predicted["flash_bytes"] == report.tflite_bytes + nrf.runtime_flash_bytes
    assert best.predicted["ram_bytes"] == report.arena_bytes + nrf.runtime_ram_bytes
    assert best.predicted["latency_ms"] == pytest.approx(report.latency(nrf).ms, abs=1e-3)


def test_cost_cache_is_written_where_edgekd_cache_says_and_reused(cold_cost_cache: Path, nrf, digits):
    first = plan(nrf, digits, families=["mlp"])
    files = list(cold_cost_cache.glob("costs-*.json"))
    assert len(files) == 1
    assert len(json.loads(files[0].read_text())) == 15  # one entry per mlp candidate
    assert plan(nrf, digits, families=["mlp"]).to_dict() == first.to_dict()
    assert {c.family for c in first.candidates} == {"mlp"}


def test_cost_cache_goes_stale_when_a_family_changes(cold_cost_cache: Path, tmp_path: Path, nrf, digits):
    """Editing a family's source must not leave old costs in the cache.

    Bug: edgekd/planner.py keys cached costs on config, shapes and costmodel.py's hash only, so after an edit
    to edgekd/students/*.py (or a user's own family module) the planner keeps serving the old architecture.
    """
    source = '''
from torch import nn
from edgekd.students import Family, register_family

class Net(nn.Module):
    def __init__(self, params, task_shape, num_classes):
        super().__init__()
        self.input_shape = tuple(task_shape)
        self.body = nn.Sequential(nn.Flatten(), LAYERS)

    def forward(self, x):
        return self.body(x)

register_family(Family(name="edgekd-test-edited", kinds=("image",), build=Net, grid={"width": (1,)},
                       channels_last_input=False))
'''
    path = tmp_path / "edited_family.py"

    def load(layers: str) -> None:
        path.write_text(source.replace("LAYERS", layers))
        spec = importlib.util.spec_from_file_location("edgekd_test_edited_family", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)

    try:
        load("nn.Linear(64, num_classes)")
        assert plan(nrf, digits, families=["edgekd-test-edited"]).student.macs == 64 * 10
        load("nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes)")  # the family is edited
        assert plan(nrf, digits, families=["edgekd-test-edited"]).student.macs == 64 * 32 + 32 * 10
    finally:
        FAMILIES.pop("edgekd-test-edited", None)
        sys.modules.pop("edgekd_test_edited_family", None)


def test_tiny_ram_budget_fits_nothing_and_says_why(nrf, digits):
    p = plan(nrf.with_budgets(ram="2KB"), digits)
    assert not p.fits and p.student is None
    assert p.budgets["ram_bytes"] == 2000
    assert all("ram_bytes" in c.over and not c.fits for c in p.candidates)
    message = explain_no_fit(p)
    assert "\n" not in message
    assert message.startswith("no student fits nrf52840-dk for task digits")
    closest = min(p.candidates, key=lambda c: c.predicted["ram_bytes"])  # RAM is the only budget missed
    assert closest.label() in message
    assert f"RAM {format_bytes(closest.predicted['ram_bytes'])} > budget {format_bytes(2000)}" in message
    assert f"over by {format_bytes(closest.predicted['ram_bytes'] - 2000)}" in message
    d = p.to_dict()
    assert d["fits"] is False and d["student"] is None and d["predicted"] is None
    assert d["candidates_fitting"] == 0 and d["candidates_total"] == len(p.candidates)


def test_target_without_an_operator_refuses_students_that_need_it(nrf, digits):
    no_mean = dataclasses.replace(nrf, operators=tuple(op for op in nrf.operators if op != "MEAN"))
    assert no_mean.budgets == nrf.budgets
    p = plan(no_mean, digits)
    by_family: dict[str, set[bool]] = {}
    for c in p.candidates:
        by_family.setdefault(c.family, set()).add(c.fits)
        if c.family in ("dscnn", "resnet"):  # their global average pool is a MEAN
            assert c.unsupported_ops == ["MEAN"] and not c.fits
        else:
            assert c.unsupported_ops == []
    assert p.student.family == "mlp"
    assert by_family["dscnn"] == by_family["resnet"] == {False}

    neither = dataclasses.replace(nrf, operators=tuple(op for op in nrf.operators
                                                       if op not in ("MEAN", "FULLY_CONNECTED")))
    p = plan(neither, digits)
    assert not p.fits
    assert "operators FULLY_CONNECTED, MEAN not supported by nrf52840-dk" in explain_no_fit(p)


def test_plan_to_dict(nrf, digits):
    p = plan(nrf, digits)
    d = p.to_dict(runners_up=3)
    assert {"target", "task", "student", "predicted", "budgets", "fits", "candidates"} <= set(d)
    assert d["target"] == "nrf52840-dk" and d["task"] == "digits" and d["fits"] is True
    assert set(d["student"]) == {"family", "config", "params", "macs"}
    assert d["student"] == {"family": p.student.family, "config": p.student.config, "params": p.student.params,
                            "macs": p.student.macs}
    assert set(d["predicted"]) == {"flash_bytes", "ram_bytes", "latency_ms"}
    assert d["budgets"] == {"flash_bytes": 262144, "ram_bytes": 65536, "latency_ms": 200.0}
    assert len(d["candidates"]) == 4 and d["candidates"][0]["config"] == p.student.config
    assert d["candidates_total"] == 70 and d["latency_kind"] == "estimated"
    assert json.loads(json.dumps(d)) == d


def test_budget_overrides_change_the_choice(nrf, digits):
    macs = []
    for ram in ("8KB", "12KB", "16KB", "64KB"):
        p = plan(nrf.with_budgets(ram=ram), digits)
        assert p.fits and p.budgets["ram_bytes"] == int(ram[:-2]) * 1000
        check_budgets(p.student, p.budgets)
        macs.append(p.student.macs)
    assert macs == sorted(macs) and macs[0] < macs[-1]  # more RAM never picks less; here it picks more
    fast = plan(nrf.with_budgets(latency="5ms"), digits)
    assert fast.budgets["latency_ms"] == 5.0 and fast.student.predicted["latency_ms"] <= 5.0
    assert fast.student.macs < plan(nrf, digits).student.macs
    small = plan(nrf.with_budgets(flash="64KiB"), digits)
    assert small.student.predicted["flash_bytes"] <= 64 * KIB


def test_phone_picks_at_least_what_a_microcontroller_picks(nrf, digits):
    mcu = plan(nrf, digits).student
    phone = plan(load_target("google-pixel-8"), digits)
    assert phone.fits and phone.dtype == "int8"
    check_budgets(phone.student, phone.budgets)
    assert phone.student.macs >= mcu.macs
    assert phone.student.predicted["flash_bytes"] >= 16 * KIB * KIB  # LiteRT / ExecuTorch runtime overhead


def test_fp32_target_costs_fp32_weights(nrf, digits):
    fp32 = dataclasses.replace(load_target("raspberry-pi-4b"), quantization="fp32")
    p = plan(fp32, digits, families=["mlp"])
    assert p.dtype == "fp32" and p.to_dict()["dtype"] == "fp32"
    best = p.student
    torch.manual_seed(0)
    model = build_student(best.student, digits.input_shape, digits.num_classes)
    report = analyze(model, model_input_shape(model), "fp32", channels_last_input=False)
    assert best.predicted["flash_bytes"] == report.model_bytes + fp32.runtime_flash_bytes
    assert report.model_bytes - report.tflite_bytes == report.fp32_weight_bytes - report.int8_weight_bytes > 0


@pytest.mark.slow  # costs every cnn1d/mlp candidate cold: 8 s on shared cores; CI runs it
def test_time_series_task_plans_a_time_series_family(nrf, cost_cache):
    p = plan(nrf, get_spec("basic-motions"))
    assert p.fits and p.student.family in ("cnn1d", "mlp")
    assert {c.family for c in p.candidates} == {"cnn1d", "mlp"}
    check_budgets(p.student, p.budgets)


def test_no_family_for_the_task_is_an_error(nrf):
    with pytest.raises(EdgekdError, match="no student family serves timeseries tasks among dscnn"):
        plan(nrf, get_spec("basic-motions"), families=["dscnn"])
    with pytest.raises(EdgekdError, match="unknown student family 'nope'"):
        plan(nrf, get_spec("digits"), families=["nope"])


def test_student_config_round_trip(nrf, digits):
    best = plan(nrf, digits).student
    assert best.student == StudentConfig(best.family, best.config)
    assert best.student.to_dict() == {"family": best.family, "config": best.config}


@pytest.mark.slow  # costs 24 mbv2 candidates cold: 8 s on shared cores; CI runs it
def test_mbv2_is_planned_only_when_named(nrf, digits):
    default = plan(nrf, digits)
    assert "mbv2" not in {c.family for c in default.candidates}
    named = plan(nrf, digits, ["mbv2"])
    assert {c.family for c in named.candidates} == {"mbv2"} and len(named.candidates) == 24
    assert named.student is not None and named.student.fits
    assert named.student.macs == max(c.macs for c in named.candidates if c.fits)
    check_budgets(named.student, named.budgets)


def test_check_student_costs_a_named_config_like_the_planner(nrf, digits):
    from edgekd.planner import OverBudget, check_student, evaluate

    config = StudentConfig("mbv2", {"width": 8, "expand": 3, "kernel": 5, "d1": 1, "d2": 1, "d3": 1,
                                    "resolution": None})
    cand = check_student(config, nrf, digits)
    assert cand == evaluate(config, nrf, digits) and cand.fits
    with pytest.raises(OverBudget, match=r"latency .* ms > budget 0.1 ms") as exc:
        check_student(config, nrf.with_budgets(latency="0.1ms"), digits)
    assert exc.value.exit_code == 1


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.parametrize("pair", ["nrf52840-dk:digits", "stm32f746g-disco:digits"])
def test_planned_student_passes_the_counted_latency_gate(pair: str, tmp_path: Path):
    """Issue 14 item 4: on a microcontroller that runs edgekd's generated C, the planner's latency is the C's
    calibrated per-operator cycles, so the student it fits also passes the gate's counted figure (the planned
    student, untrained, exported to int8, its C counted by ``count_invoke`` as ``edgekd build`` does)."""
    spec = importlib.util.spec_from_file_location("calibrate_costs",
                                                  Path(__file__).resolve().parent.parent / "scripts" /
                                                  "calibrate_costs.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    r = script.check(pair, tmp_path)
    assert r["estimated_ms"] <= r["budget_ms"] and r["passes_counted_gate"], r
    assert abs(r["err_pct"]) <= WHOLE_MODEL_ERR_PCT, r
    assert r["layers_matched"] and "calibrated" in r["method"]
    for layer in r["layers"]:
        assert abs(layer["err_pct"]) <= LAYER_ERR_PCT, layer
