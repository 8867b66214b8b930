"""Formats are plugins: a new one is one class registered from one file, and export -> verify -> package ->
package verify handle it with no other change (here the plugin lives in this test file)."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgekd.errors import EdgekdError
from edgekd.export import export_student, load_export
from edgekd.export.records import Artifact, ExportContext
from edgekd.formats import FORMAT_NAMES, RUNTIME_NAMES, formats, get_format, register_format, unregister_format
from edgekd.formats.base import Bundle, Details, Format, HostRun, HostRuns, VectorCheck, VerifyInput
from edgekd.package import package_build, verify_package
from edgekd.targets import load_target
from edgekd.verify import verify_build

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class NpyDetails(Details):
    inputs: int
    classes: int


def _run(weights: bytes, x: np.ndarray) -> np.ndarray:
    w = np.load(io.BytesIO(weights))
    return (x.reshape(len(x), -1).astype(np.float64) @ w["w"] + w["b"]).astype(np.float32)


class Npy(Format):
    """A linear model fitted (numpy least squares) to the student's logits on the calibration set."""

    name = "npy"
    runtimes = ("numpy",)
    details_type = NpyDetails

    def export(self, ctx: ExportContext) -> list[Artifact]:
        import torch

        x = ctx.calibration.reshape(len(ctx.calibration), -1).astype(np.float64)
        with torch.no_grad():
            y = ctx.model.eval()(torch.from_numpy(ctx.calibration)).numpy().astype(np.float64)
        coef, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)
        path = ctx.out_dir / "model_fp32.npz"
        with path.open("wb") as f:
            np.savez(f, w=coef[:-1], b=coef[-1])
        return [ctx.artifact("npy", "fp32", path, "numpy", NpyDetails(x.shape[1], y.shape[1]))]

    def describe(self, artifact: Artifact) -> str:
        return f"linear {artifact.details.inputs} -> {artifact.details.classes}"  # type: ignore[attr-defined]

    def host_runs(self, inp: VerifyInput, artifact: Artifact) -> HostRuns:
        out = _run((inp.build / artifact.path).read_bytes(), inp.x)
        return HostRuns([HostRun("numpy", "numpy", 1, out, [0.01] * len(out))], (artifact.bytes, "weights"))

    def vectors(self, build: Path, artifact: Artifact, x: np.ndarray) -> dict[str, bytes]:
        return {"vectors/expected_npy_f32.bin": _run((build / artifact.path).read_bytes(), x).tobytes()}

    def vector_sizes(self, entry: dict[str, Any]) -> list[tuple[str, int | None, str]]:
        return [("vectors/expected_npy_f32.bin", None, "float32 output")]

    def rerun(self, bundle: Bundle, entry: dict[str, Any], model: Path) -> list[VectorCheck]:
        from edgekd.package.vectors import float_check, input_f32

        got = _run(model.read_bytes(), input_f32(bundle))
        return [float_check(bundle, entry["path"], "numpy", got, "vectors/expected_npy_f32.bin")]


@pytest.fixture
def npy() -> Iterator[Format]:
    fmt = register_format(Npy())
    yield fmt
    unregister_format("npy")


def test_builtin_formats_are_registered_in_export_order() -> None:
    assert [f.name for f in formats()] == ["tflite", "pte", "c"]
    assert tuple(FORMAT_NAMES) == ("tflite", "pte", "c")
    assert tuple(RUNTIME_NAMES) == ("tflm", "litert", "executorch-xnnpack", "edgekd-c")


def test_a_registered_format_is_valid_in_a_profile(npy: Format, tmp_path: Path) -> None:
    profile = yaml.safe_load((ROOT / "targets" / "raspberry-pi-4b.yaml").read_text())
    profile["formats"] = [*profile["formats"], "npy"]
    profile["runtimes"] = [*profile["runtimes"], "numpy"]
    path = tmp_path / "raspberry-pi-4b.yaml"
    path.write_text(yaml.safe_dump(profile))
    assert "npy" in load_target(str(path)).formats
    unregister_format("npy")
    with pytest.raises(EdgekdError, match="unknown name 'numpy'"):
        load_target(str(path))


def test_a_new_format_goes_through_export_verify_package(npy: Format, mcu_student: Path, tmp_path: Path) -> None:
    target = load_target("nrf52840-dk")
    target = dataclasses.replace(target, formats=(*target.formats, "npy"))
    build = tmp_path / "build"
    record = export_student(target, mcu_student, build, formats=["npy"])
    assert [a.key for a in record.artifacts] == ["npy-fp32"] and "linear 64 -> 10" in record.text(build)
    loaded = load_export(build)
    assert isinstance(loaded.artifacts[0].details, NpyDetails) and loaded.to_json() == record.to_json()

    verified = verify_build(target, build, limit=40)
    (run,) = verified.runs
    assert run.runtime == "numpy" and run.fidelity.accuracy > 0.3
    assert verified.gates["ram"] is not None and "weights" in verified.gates["ram"].detail

    bundle = tmp_path / "npy.tar.gz"
    package_build(build, bundle, vectors=4)
    checked = verify_package(bundle)
    assert [(c.runtime, c.passed) for c in checked.vectors] == [("numpy", True)] and checked.passed
    assert get_format("npy") is npy
