"""scripts/bench_distill.py's split between training elsewhere and measuring int8 here (issue 15).

A run trained with ``--no-int8`` (on a GPU machine without LiteRT) records float results and its run folder;
``--measure-int8`` later exports that folder's student.pt and measures it. The figures must be the ones
``distill`` itself measures for the same student.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))


@pytest.mark.slow  # two 1-epoch digits students and two LiteRT + TFLite Micro measurements (~30 s)
def test_int8_measured_later_equals_int8_measured_by_distill(tmp_path: Path) -> None:
    from bench_distill import measure_rows, trained_on

    from edgekd.distill import distill

    kwargs = {"loss": "ce", "epochs": 1, "seed": 0, "limit": 400, "progress": False, "quick_check": False}
    here = distill("nrf52840-dk", "digits", None, tmp_path / "here", **kwargs)
    later = distill("nrf52840-dk", "digits", None, tmp_path / "later", verify_int8=False, **kwargs)
    assert later["measured"] is None and 0 < here["measured"]["accuracy_int8"] <= 1
    assert (tmp_path / "here" / "student.pt").read_bytes() != b""
    row = {"loss": "ce", "seed": 0, "accuracy_int8": None, "fits": later["fits"],
           "run_dir": str(tmp_path / "later"), "trained_on": trained_on()}
    result = {"task": "digits", "labels": None, "runs": {"nrf52840-dk": [row]}}
    assert measure_rows(result, 400) == 1
    m = here["measured"]
    assert row["accuracy_int8"] == m["accuracy_int8"] and row["agreement"] == m["agreement_with_float"]
    assert row["arena_bytes"] == m["arena_bytes"] and row["tflite_bytes"] == m["tflite_bytes"]
    assert row["fits"] == here["fits"] and row["int8_measured"].startswith("here, after training: LiteRT")
    assert (tmp_path / "later" / "student_int8.tflite").read_bytes() == (
        tmp_path / "here" / "student_int8.tflite").read_bytes()
    assert measure_rows(result, 400) == 0  # measured rows are left alone
