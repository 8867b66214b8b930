"""The Cortex-A cycle model (edgekd/emulate/timing_a.py): its arithmetic, its fitted constants against
docs/cpi_calibration.json, and the committed out-of-sample check (docs/bench_cortex_a.json) against the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.emulate import timing_a

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_modelled_cycles_add_vector_memory_and_scalar_pipes() -> None:
    # A72: FMLA Q-form occupies both F pipes for a cycle each (throughput 1); one load register a cycle on L.
    classes = {"total": 3000, "fmul_q": 1000, "vld": 500, "alu": 1000, "branch": 500}
    modelled, busiest = timing_a.A72.modelled(classes)
    assert modelled == 1000 + 500 + 1000 / 2 + 500
    assert busiest == "F"
    assert timing_a.A72.modelled({"total": 30_000, "alu": 100})[1] == "issue"  # 3-wide decode: 10,000 cycles
    # A76: two 128-bit V pipes, so the same FMLAs take half the cycles.
    assert timing_a.A76.modelled({"total": 1000, "fmul_q": 1000})[0] == 500


def test_the_factor_follows_the_kernel_kind() -> None:
    t = timing_a.A72
    assert t.factor({"total": 10, "fmul_q": 10}) == pytest.approx(t.factors["float"])
    assert t.factor({"total": 10, "imull": 10}) == pytest.approx(t.factors["integer"])
    mixed = t.factor({"total": 10, "fmul_q": 5, "imull": 5})  # 10 vector-pipe cycles each
    assert mixed == pytest.approx((t.factors["float"] + t.factors["integer"]) / 2)


def test_threads_have_a_serial_part_per_operator() -> None:
    assert timing_a.threads_ms(100.0, 1, 50, 1500) == 100.0
    serial = 50 * timing_a.TAU_CYCLES / 1.5e6
    assert timing_a.threads_ms(100.0, 4, 50, 1500) == pytest.approx((100 - serial) / 4 + serial)
    assert timing_a.threads_ms(1.0, 4, 10_000, 1500) == 1.0  # never slower than one thread


def test_unknown_cores_are_refused_and_the_a715_is_timed_as_the_a76() -> None:
    assert timing_a.timing_for("cortex-a715") is timing_a.A76
    with pytest.raises(KeyError, match="cortex-a55"):
        timing_a.timing_for("cortex-a55")


def test_constants_are_the_calibration_scripts() -> None:
    cal = json.loads((DOCS / "cpi_calibration.json").read_text())
    assert timing_a.TAU_CYCLES == cal["tau_cycles_per_operator"]
    assert timing_a.FACTORS == cal["factors"]
    assert {(r["model"], r["precision"], r["qemu_cpu"]) for r in cal["fit_rows"]} == {
        ("v1", "fp32", "cortex-a76"), ("v1", "fp32", "cortex-a72"), ("v1", "int8", "cortex-a72"),
        ("v1", "fp32", "cortex-a53"), ("v1", "int8", "cortex-a53")}


def test_the_committed_benchmark_is_what_the_model_says_and_holds_out_of_sample() -> None:
    doc = json.loads((DOCS / "bench_cortex_a.json").read_text())
    counts = doc["counts"]
    tests = 0
    for row in doc["rows"]:
        key = {"MobileNet v1 1.0": "v1", "MobileNet v2 1.0": "v2", "MobileNet v3-Large": "v3l",
               "MobileNet v3-Small": "v3s"}[row["model"]]
        c = counts[f"mobilenet_{key}_{row['precision']}.{row['qemu_cpu']}"]
        pred = timing_a.predict(c["classes"], row["qemu_cpu"], row["clock_mhz"], row["threads"], c["ops"])
        assert pred.ms == pytest.approx(row["counted_ms"], abs=0.01)
        assert c["xnnpack_delegate"] and not (row["precision"] == "int8" and c["float_islands"])
        if row["role"] == "test":
            tests += 1
            assert 0.75 <= row["ratio"] <= 1.25, row
    assert tests >= 10
