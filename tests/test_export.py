"""Exporters: .tflite (int8 / fp32), .pte (XNNPACK int8 / fp32) and the C array, on tiny trained students."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd.cli import main
from edgekd.errors import EdgekdError
from edgekd.export import export_student, load_export
from edgekd.export.tflite import export_tflite_int8, refuse_unsupported
from edgekd.formats.tflite import TfliteDetails
from edgekd.students import ClassifierHead
from edgekd.targets import load_target

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cache(cost_cache: Path) -> None:
    """Keep planner costs out of ~/.cache/edgekd."""


def test_mcu_export_is_fully_integer_tflite_and_c(mcu_build: Path) -> None:
    record = load_export(mcu_build)
    assert record.formats == ["tflite", "c"] and record.precisions == ["int8"]
    keys = {a.key: a for a in record.artifacts}
    assert set(keys) == {"tflite-int8", "c-int8"}
    t = keys["tflite-int8"].details
    assert isinstance(t, TfliteDetails)
    assert t.fully_integer and t.float_islands == [] and t.input.dtype == "int8"
    assert t.output.dtype == "int8" and t.channels_last and t.input.shape == (1, 8, 8, 1)
    assert set(t.ops) <= set(load_target("nrf52840-dk").operators)
    assert (mcu_build / "student.pt").is_file() and record.calibration and record.calibration.samples > 0
    # export.json keeps its keys: the typed record writes back exactly what the file holds
    assert record.to_json() == json.loads((mcu_build / "export.json").read_text())


def test_generated_c_array_compiles_and_holds_the_tflite_bytes(mcu_build: Path, tmp_path: Path) -> None:
    assert shutil.which("gcc"), "gcc is needed (.ci/run installs it)"
    artifacts = load_export(mcu_build).artifacts
    c = next(a for a in artifacts if a.format == "c")
    main_c = tmp_path / "main.c"
    main_c.write_text("""#include <stdio.h>
#include <stdint.h>
#include "model_data.h"
int main(int argc, char **argv) {
  FILE *f = fopen(argc > 1 ? argv[1] : "model.tflite", "wb");
  fwrite(g_model_data, 1, g_model_data_len, f);
  fclose(f);
  printf("%d %d %d %d\\n", EDGEKD_TENSOR_ARENA_SIZE, EDGEKD_MODEL_DATA_LEN, (int)((uintptr_t)g_model_data % 16),
         EDGEKD_INPUT_ZERO_POINT);
  return 0;
}
""")
    exe = tmp_path / "dump"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(mcu_build), str(main_c),
                    str(mcu_build / "model_data.c"), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe), str(tmp_path / "dump.tflite")], capture_output=True, text=True, check=True)
    arena, length, misalign, zp = (int(v) for v in out.stdout.split())
    tflite = (mcu_build / "model_int8.tflite").read_bytes()
    assert (tmp_path / "dump.tflite").read_bytes() == tflite and length == len(tflite) and misalign == 0
    assert arena == c.details.tensor_arena_bytes and arena % 16 == 0 and 1000 < arena < 64 * 1024
    tfl = next(a for a in artifacts if a.key == "tflite-int8")
    assert zp == tfl.details.input.zero_point


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_linux_export_has_pte_and_tflite_in_int8_and_fp32(pi_build: Path) -> None:
    keys = {a.key: a for a in load_export(pi_build).artifacts}
    assert set(keys) == {"tflite-int8", "tflite-fp32", "pte-int8", "pte-fp32"}
    for key in ("pte-int8", "pte-fp32"):
        d = keys[key].details.delegation
        assert d.delegated_nodes > 10 and d.portable_fallback_ops == {}
        assert keys[key].runtime == "executorch-xnnpack"
    assert keys["pte-int8"].bytes < keys["pte-fp32"].bytes / 2  # int8 weights
    assert keys["tflite-int8"].bytes < keys["tflite-fp32"].bytes / 2
    assert keys["tflite-fp32"].details.input.dtype == "float32"


@pytest.mark.slow  # a real build or a Linux export: minutes on 2 cores
def test_export_is_deterministic(pi_student: Path, pi_build: Path, tmp_path: Path) -> None:
    export_student("raspberry-pi-4b", pi_student, tmp_path, formats=["pte", "tflite"], precisions=["int8"])
    again = load_export(tmp_path).artifacts
    first = load_export(pi_build).artifacts
    shas = {a.key: a.sha256 for a in first}
    for a in again:
        assert a.sha256 == shas[a.key], a.key


def test_export_cli_refuses_a_format_the_target_does_not_run(mcu_student: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["export", "--target", "nrf52840-dk", "--student", str(mcu_student), "--out",
                                  str(tmp_path / "b"), "--formats", "pte"])
    assert r.exit_code == 2 and "nrf52840-dk does not run 'pte'" in r.output
    r = CliRunner().invoke(main, ["export", "--target", "nrf52840-dk", "--student", str(tmp_path / "none"),
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "no student here" in r.output
    assert not (tmp_path / "b" / "export.json").exists()


def test_export_refuses_operators_the_target_lacks_before_converting(mcu_student: Path, tmp_path: Path) -> None:
    profile = (ROOT / "targets" / "nrf52840-dk.yaml").read_text().replace("DEPTHWISE_CONV_2D, ", "")
    yaml = tmp_path / "no-depthwise.yaml"
    yaml.write_text(profile.replace("name: nrf52840-dk", "name: no-depthwise"))
    with pytest.raises(EdgekdError, match="DEPTHWISE_CONV_2D not supported by target no-depthwise"):
        export_student(str(yaml), mcu_student, tmp_path / "b")
    assert not list(tmp_path.rglob("*.tflite"))  # refused from the cost model, before any conversion


class _HardSwishNet(nn.Module):
    channels_last_input = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.Hardswish()
        self.head = ClassifierHead(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)))


def test_float_islands_are_found_and_refused_for_mcu_targets(tmp_path: Path) -> None:
    torch.manual_seed(0)
    calib = np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)
    art = export_tflite_int8(_HardSwishNet(), (1, 8, 8), calib, tmp_path / "m.tflite")
    assert "HARD_SWISH" in art.graph.float_islands and not art.graph.fully_integer
    with pytest.raises(EdgekdError, match="float islands .*HARD_SWISH") as exc:
        refuse_unsupported(art.graph, load_target("alif-ensemble-e3"), art.path)
    assert "alif-ensemble-e3 needs a fully-integer model" in str(exc.value)
    assert not art.path.exists()  # a refused file is not left behind


@pytest.mark.slow  # a full int8 conversion, 8 s on shared cores; CI runs it (quick: tests/test_data.py)
def test_small_calibration_set_is_warned_about(mcu_student: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["export", "--target", "nrf52840-dk", "--student", str(mcu_student), "--out",
                                  str(tmp_path), "--formats", "tflite", "--calib-size", "50", "--json"])
    assert r.exit_code == 0, r.output
    record = json.loads(r.output[r.output.index("{"):])
    assert record["calibration"]["samples"] == 50
    assert any("only 50 samples" in w for w in record["calibration"]["warnings"])


class _InvertedResidual(nn.Module):
    """A MobileNet-v2 block: expand 1x1 + ReLU6, depthwise 3x3 + ReLU6, linear 1x1, then ``x + y`` with no ReLU.
    Inside a submodule, as in MobileNet v2: that is where litert-torch's ``add`` pattern misses it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(),
                                  nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),
                                  nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _ResidualNet(nn.Module):
    input_shape = (3, 12, 12)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(_InvertedResidual(), _InvertedResidual())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def _residual_export(tmp_path: Path, name: str, qat: bool = False) -> object:
    torch.manual_seed(0)
    model = _ResidualNet().eval()
    calib = np.random.default_rng(0).normal(size=(8, 3, 12, 12)).astype(np.float32)
    state = None
    if qat:
        from edgekd.distill.qat import prepare_qat

        prepared = prepare_qat(model)
        with torch.no_grad():
            prepared(torch.from_numpy(calib))  # observers see data: the trained-graph path without training
        state = prepared.state_dict()
    return export_tflite_int8(model, (3, 12, 12), calib, tmp_path / name, qat_state=state)


@pytest.mark.slow
def test_residual_adds_are_quantized_in_ptq_and_qat_exports(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A residual ``x + y`` without a following ReLU stays int8 (issue 19): no DEQUANTIZE/ADD/QUANTIZE island."""
    for art in (_residual_export(tmp_path, "ptq.tflite"), _residual_export(tmp_path, "qat.tflite", qat=True)):
        assert art.graph.ops.count("ADD") == 2
        assert art.graph.float_islands == [] and art.graph.fully_integer
        assert "DEQUANTIZE" not in art.graph.ops and art.graph.ops.count("QUANTIZE") == 0
    # litert-torch's own quantizer leaves this add in float under torch 2.13: the test would catch a regression.
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    import edgekd.distill.qat as qat

    monkeypatch.setattr(qat, "ResidualAddQuantizer", PT2EQuantizer)
    stock = _residual_export(tmp_path, "stock.tflite")
    assert "ADD" in stock.graph.float_islands and "DEQUANTIZE" in stock.graph.ops


@pytest.mark.slow
@pytest.mark.parametrize("family", ["dscnn", "resnet"])
def test_students_without_float_adds_export_the_same_bytes(family: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The residual-add annotation touches only adds the stock quantizer left in float: a dscnn (no add) and a
    resnet (ADD followed by ReLU, annotated by ``add_relu``) export byte-identical files with either quantizer."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer

    import edgekd.distill.qat as qat
    from edgekd.students import build_student, parse_config

    calib = np.random.default_rng(0).normal(size=(8, 1, 16, 16)).astype(np.float32)

    def export(name: str) -> str:
        torch.manual_seed(0)
        model = build_student(parse_config(family, ""), (1, 16, 16), 10).eval()
        return export_tflite_int8(model, (1, 16, 16), calib, tmp_path / name).sha256

    new = export("new.tflite")
    monkeypatch.setattr(qat, "ResidualAddQuantizer", PT2EQuantizer)
    assert export("stock.tflite") == new


@pytest.mark.slow
def test_qat_student_exports_its_trained_graph_to_both_formats(tmp_path: Path) -> None:
    from edgekd.distill import distill

    distill("raspberry-pi-4b", "digits", None, tmp_path / "s", loss="ce", epochs=15, qat=True, qat_epochs=1,
            limit=400, families=["dscnn"], verify_int8=False, progress=False)
    record = export_student("raspberry-pi-4b", tmp_path / "s", tmp_path / "b", formats=["tflite", "pte"],
                            precisions=["int8"])
    assert record.student.qat is True
    keys = {a.format: a for a in record.artifacts}
    assert keys["tflite"].details.fully_integer
    assert keys["pte"].details.delegation.portable_fallback_ops == {}
    from edgekd.verify import verify_build

    runs = {r.runtime: r for r in verify_build("raspberry-pi-4b", tmp_path / "b").runs}
    assert abs(runs["executorch"].accuracy - runs["litert"].accuracy) < 0.03  # the same trained ranges


# ------------------------------------------------------------------ trust: no half exports, no damaged records

def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".edgekd.lock"}


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_a_failed_export_leaves_the_folder_as_it_was(mcu_student: Path, mcu_build: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from edgekd.formats import get_format

    def disk_full(ctx) -> list:
        assert (ctx.out_dir / "model_int8.tflite").is_file()  # the .tflite was written: fail half-way
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(get_format("c"), "export", disk_full)
    build = tmp_path / "b"
    shutil.copytree(mcu_build, build)
    before = _files(build)
    with pytest.raises(OSError, match="No space left"):
        export_student("nrf52840-dk", mcu_student, build)
    assert _files(build) == before  # no new .tflite or student.pt, no temp files or folders
    assert sorted(p.name for p in build.iterdir() if p.name.startswith(".")) == [".edgekd.lock"]
    load_export(build)  # the earlier export is still whole
    with pytest.raises(OSError, match="No space left"):
        export_student("nrf52840-dk", mcu_student, tmp_path / "new")
    assert not (tmp_path / "new").exists()  # a folder it created is removed again


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: r[: len(r) // 2], "export.json: the export record is not valid JSON"),
    (lambda r: "[]", "export.json: the export record holds a JSON list"),
    (lambda r: json.dumps({k: v for k, v in json.loads(r).items() if k != "artifacts"}),
     "export.json: 'artifacts' is missing or not a JSON list"),
    (lambda r: r.replace('"input_shape": [', '"input_shape": 3, "x": ['),
     "export.json: 'input_shape' is missing or not a JSON list"),
    (lambda r: json.dumps(json.loads(r) | {"artifacts": [{"path": "model_int8.tflite"}]}),
     r"export.json: artifacts\[0\].format is missing or not a string"),
    (lambda r: r.replace('"path": "model_int8.tflite"', '"path": "../../etc/passwd"', 1),
     r"export.json: artifacts\[0\].path '../../etc/passwd' is outside the build folder"),
])
def test_a_damaged_export_json_is_one_error_line(mcu_build: Path, tmp_path: Path, damage, message: str) -> None:
    build = tmp_path / "b"
    shutil.copytree(mcu_build, build)
    record = build / "export.json"
    record.write_text(damage(record.read_text()))
    with pytest.raises(EdgekdError, match=message) as exc:
        load_export(build)
    assert str(exc.value).endswith("re-run `edgekd export`") and "\n" not in str(exc.value)
    r = CliRunner().invoke(main, ["package", str(build), "--out", str(tmp_path / "x.tar.gz")])
    assert r.exit_code == 2 and "re-run `edgekd export`" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["verify", "--target", "nrf52840-dk", str(build)])
    assert r.exit_code == 2 and "re-run `edgekd export`" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(("name", "message"), [("model_data.h", "listed in export.json but missing"),
                                               ("model_data.c", "sha256 differs from export.json")])
def test_every_listed_file_is_checked_before_it_is_trusted(mcu_build: Path, tmp_path: Path, name: str,
                                                           message: str) -> None:
    build = tmp_path / "b"
    shutil.copytree(mcu_build, build)
    if name.endswith(".h"):
        (build / name).unlink()
    else:
        (build / name).write_text("")
    with pytest.raises(EdgekdError, match=f"{name}: {message}"):
        load_export(build)
    assert load_export(build, check_hashes=False).target == "nrf52840-dk"


def test_export_refuses_an_unwritable_out_before_loading_anything(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(EdgekdError, match="cannot write there"):
        export_student("nrf52840-dk", tmp_path / "no-student-here", blocker / "b")
