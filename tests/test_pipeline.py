"""The typed build pipeline: the Python API, byte-identical output across the refactor (issue 13), the stage
order rules, and the new-user bugs fixed on the way (bundle name, baseline accuracy, fidelity sign)."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekd.build import PIPELINE, STAGES, BuildLayout, BuildOptions, Report, build
from edgekd.build.records import DistillRecord, PlanRecord, StudentSummary, TeacherSummary
from edgekd.build.stages import Stage, check_order

# sha256 of one `edgekd build --target nrf52840-dk --task digits --fast --emulator none`. First pinned at c9692e0
# (before the issue-13 refactor, which kept every byte). Re-pinned after changes made on purpose since: the
# built-in teacher trains without label smoothing (issue 15), and the fast build's tiny validation split now ships
# the final epoch (issue 15's epoch-selection rule); each changed the student's weights, its .tflite and the
# expected outputs. Two separate builds at each re-pin gave the same values. student.pt's own bytes are not
# pinned: torch.save names the zip's root folder after the temporary file it writes through, so they differ
# between two identical builds; its weights are pinned instead. MODEL_CARD.md and manifest.json are not pinned.
PINNED_WEIGHTS = "b3050b71bf83790c0603dba4f864500bdf4da728b7cb3b8c314c18f2c78befc2"
PINNED_FILES = {
    "artifacts/model_int8.tflite": "983f6aba3272c0d2d306814e8c4419ce9a2d01698a688415d5c766994b540326",
    "artifacts/model_data.c": "93c5c8662b4c9320a8ed0d2df30e85cdb90189a50af858ee3f42444341a4492e",
}
PINNED_BUNDLE = {
    "model_data.c": "93c5c8662b4c9320a8ed0d2df30e85cdb90189a50af858ee3f42444341a4492e",
    "model_data.h": "e2736a55f9cf138f0871716582bc66da14d87cef864743de6cf90bec4aca5ba3",
    "model_int8.tflite": "983f6aba3272c0d2d306814e8c4419ce9a2d01698a688415d5c766994b540326",
    "vectors/expected_model_int8_int8.bin": "8d213fc347548b4815b6ffe46247a2ce552279f77c72ec6314fb3ff22545541b",
    "vectors/input_f32.bin": "30bf73d05250d78b60a3862cfc58faf350acda18e116b9646177965c6d854805",
    "vectors/input_int8.bin": "8b411bb8be942da51faa4363b1713d40d701cd5335821155a1315296cea50de5",
    "vectors/labels_u8.bin": "4c597c918e2b03c758a7de2395d094ad898e9ba1a4420b960460e2802b6f2a5d",
}


def weights_sha256(student: Path) -> str:
    """sha256 over the student's state dict (names and tensor bytes, sorted): what training produced."""
    import torch

    blob = torch.load(student, weights_only=True)
    h = hashlib.sha256()
    for name, tensor in sorted(blob["state_dict"].items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def api_build(tmp_path_factory: pytest.TempPathFactory, warm_cost_cache: Path) -> Iterator[tuple[Report, Path]]:
    """The README's Python example, with the pinned build's options (no emulator: the same on every machine).

    One torch thread, as when the hashes were pinned: float sums in the training kernels are ordered by thread
    count, so bit-identical students need the same count (CI runs with two)."""
    import torch

    out = tmp_path_factory.mktemp("api") / "b"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("EDGEKD_CACHE", str(warm_cost_cache))
            report = build("nrf52840-dk", task="digits", fast=True, emulator="none", out=out)
    finally:
        torch.set_num_threads(threads)
    yield report, out


@pytest.mark.slow
def test_a_build_gives_the_pinned_bytes(api_build: tuple[Report, Path]) -> None:
    report, out = api_build
    layout = BuildLayout(out)
    assert weights_sha256(layout.student_file) == PINNED_WEIGHTS
    for rel, digest in PINNED_FILES.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel
    with tarfile.open(out / report.bundle) as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert {k: hashlib.sha256(members[k]).hexdigest() for k in PINNED_BUNDLE} == PINNED_BUNDLE


@pytest.mark.slow
def test_the_python_api_returns_the_typed_report(api_build: tuple[Report, Path]) -> None:
    report, out = api_build
    assert isinstance(report, Report) and report.passed and report.target == "nrf52840-dk"
    assert report.bundle == "edgekd-nrf52840-dk-digits.tar.gz" and (out / report.bundle).is_file()
    assert report.skipped_stages == []
    plan = PlanRecord.read(BuildLayout(out).plan_json)
    assert plan.student is not None  # distill trained the plan's student, it did not plan again
    assert (report.distill.student.family, report.distill.student.config) == (plan.student.family,
                                                                             plan.student.config)
    # --fast evaluates min(300, all) test samples and says of how many
    assert report.evaluated_on["test"] == min(300, report.evaluated_on["of"])
    md = (out / "report.md").read_text()
    assert f"Evaluated on {report.evaluated_on['test']:,} of {report.evaluated_on['of']:,} test samples." in md
    assert "nrf52840-dk: PASS" in report.text(out)


def test_stages_declare_what_they_need_in_order() -> None:
    assert STAGES == ("plan", "teacher", "distill", "export", "verify", "package")
    assert dict((s.name, s.needs) for s in PIPELINE)["distill"] == ("plan", "teacher")
    with pytest.raises(ValueError, match="stage export needs distill, which must run before it"):
        check_order([Stage("plan"), Stage("export", needs=("distill",)), Stage("distill")])


def test_a_bundle_is_named_after_the_users_data_file(tmp_path: Path) -> None:
    data = tmp_path / "some" / "dir" / "mnist5k.npz"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"")
    opts = BuildOptions(task=str(data))
    assert opts.data_label == "mnist5k"
    assert BuildLayout(tmp_path).bundle("nrf52840-dk", opts.data_label).name == "edgekd-nrf52840-dk-mnist5k.tar.gz"
    assert BuildOptions(task="digits").data_label == "digits"


def _report(no_teacher: float | None, no_teacher_int8: float | None = None) -> Report:
    student = StudentSummary("dscnn", {"width": 8}, 1000, 20000, 0.95, None, no_teacher, no_teacher_int8, False)
    dist = DistillRecord(student, TeacherSummary(5000, 0.99, "t.pt"), [])
    return Report("nrf52840-dk", "digits", dist, [], {}, {}, True, "b.tar.gz", {"test": 300, "of": 1000, "layers": 1},
                  {}, [], {})


def test_report_md_says_the_no_teacher_baseline_is_float_accuracy() -> None:
    assert "(no teacher: 91.00% float); teacher 99.00%" in _report(0.91).summary_line()
    assert "(no teacher: 91.00% float, int8 90.00%)" in _report(0.91, 0.90).summary_line()
    assert "no teacher" not in _report(None).summary_line()
    assert "Evaluated on 300 of 1,000 test samples." in _report(None).summary_line()


def test_a_fidelity_drop_is_printed_as_a_drop() -> None:
    from edgekd.verify.gates import fidelity_gate
    from edgekd.verify.records import RuntimeRun

    run = RuntimeRun.from_json({"artifact": "model_int8.tflite", "format": "tflite", "precision": "int8",
                                "runtime": "tflm", "kernels": "reference", "threads": 1, "accuracy": 0.85,
                                "agreement_with_float": 0.9, "max_abs_err": 0.1, "mean_abs_err": 0.01,
                                "per_class_accuracy": {},
                                "latency": {"median_ms": 1.0, "p90_ms": 1.0, "kind": "measured", "where": "host"}})
    gate = fidelity_gate([run], 0.95, 1.0, qat=False)
    assert not gate.passed and "-10.00 pp vs float (95.00%)" in gate.detail
