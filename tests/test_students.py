"""Student families: they build for their task kinds, map task data to their inputs, never upsample, and
(slow) convert to int8 graphs a microcontroller profile accepts: no float islands, no PAD, no TRANSPOSE."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekd.costmodel import needs_pad_op
from edgekd.errors import EdgekdError
from edgekd.students import (
    FAMILIES,
    StudentConfig,
    build_student,
    conv_out,
    families_for,
    get_family,
    model_input_shape,
    same_or_valid,
    to_model_input,
)
from edgekd.targets import load_target

SHAPES = {"image": [(1, 28, 28), (1, 8, 8)], "timeseries": [(6, 100)]}
CASES = [(name, shape) for name, fam in sorted(FAMILIES.items()) if fam.plannable for kind in fam.kinds
         for shape in SHAPES.get(kind, [])]  # text families are tested with their task (tests/test_text*.py)


def test_registered_families_and_kinds():
    assert {"dscnn", "resnet", "cnn1d", "mlp"} <= set(FAMILIES)
    assert FAMILIES["dscnn"].kinds == ("image",) and FAMILIES["resnet"].kinds == ("image",)
    assert FAMILIES["cnn1d"].kinds == ("timeseries",)
    assert set(FAMILIES["mlp"].kinds) == {"image", "timeseries"}
    assert {f.name for f in families_for("timeseries")} >= {"cnn1d", "mlp"}
    assert "cnn1d" not in {f.name for f in families_for("image")}
    assert [f.name for f in families_for("image", ["mlp", "cnn1d"])] == ["mlp"]
    assert FAMILIES["mlp"].channels_last_input is False and FAMILIES["dscnn"].channels_last_input is True
    assert FAMILIES["mbv2"].kinds == ("image",) and FAMILIES["mbv2"].default is False
    assert "mbv2" not in {f.name for f in families_for("image")}  # only when named: default builds unchanged
    assert [f.name for f in families_for("image", ["mbv2"])] == ["mbv2"]
    assert "user" not in {f.name for f in families_for("image", ["user", "dscnn"])}  # named, never planned
    with pytest.raises(EdgekdError, match="unknown student family 'nope'; known: cnn1d, dscnn, mbv2, mlp, resnet, "
                                          ".*user"):
        get_family("nope")


@pytest.mark.parametrize(("family", "task_shape"), CASES, ids=[f"{f}-{'x'.join(map(str, s))}" for f, s in CASES])
def test_every_candidate_builds_and_runs(family, task_shape):
    candidates = FAMILIES[family].candidates(task_shape)
    assert candidates
    for params in candidates:
        torch.manual_seed(0)
        model = build_student(StudentConfig(family, params), task_shape, 7).eval()
        shape = model_input_shape(model)
        x = to_model_input(torch.randn(3, *task_shape), shape)
        assert tuple(x.shape) == (3, *shape)
        with torch.no_grad():
            y = model(x)
        assert tuple(y.shape) == (3, 7), params
        assert model.edgekd_config == StudentConfig(family, params)
        assert model.channels_last_input is FAMILIES[family].channels_last_input


def test_input_shape_attribute():
    def shape_of(family: str, params: dict, task_shape: tuple[int, ...]) -> tuple[int, ...]:
        return model_input_shape(build_student(StudentConfig(family, params), task_shape, 10))

    assert shape_of("dscnn", {"width": 8, "depth": 2, "resolution": None}, (1, 28, 28)) == (1, 28, 28)
    assert shape_of("dscnn", {"width": 8, "depth": 2, "resolution": 16}, (1, 28, 28)) == (1, 16, 16)
    assert shape_of("resnet", {"width": 8, "depth": 1, "stages": 2, "resolution": 16}, (3, 28, 28)) == (3, 16, 16)
    assert shape_of("cnn1d", {"width": 8, "depth": 2}, (6, 100)) == (6, 1, 100)  # a 1-pixel-high image
    assert shape_of("mlp", {"width": 32, "depth": 1}, (6, 100)) == (6, 100)
    assert shape_of("mlp", {"width": 32, "depth": 1}, (1, 8, 8)) == (1, 8, 8)


def test_parameter_counts_by_hand():
    model = build_student(StudentConfig("mlp", {"width": 32, "depth": 2}), (1, 8, 8), 10)
    assert sum(p.numel() for p in model.parameters()) == (64 * 32 + 32) + (32 * 32 + 32) + (32 * 10 + 10)
    # cnn1d width 8 depth 2 kernel 5 on (6, 100): conv 6->8 (stride 2), conv 8->16 (second half doubles)
    model = build_student(StudentConfig("cnn1d", {"width": 8, "depth": 2, "kernel": 5}), (6, 100), 4)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (6, 8, (1, 5), (1, 2)), (8, 16, (1, 5), (1, 2))]
    assert model.feature_channels == 16


def test_to_model_input_reshapes_time_series_for_free():
    x = np.arange(2 * 6 * 100, dtype=np.float32).reshape(2, 6, 100)
    out = to_model_input(x, (6, 1, 100))
    assert out.shape == (2, 6, 1, 100) and out.dtype == torch.float32
    assert torch.equal(out[:, :, 0, :], torch.from_numpy(x))
    same = to_model_input(torch.from_numpy(x), (6, 100))
    assert torch.equal(same, torch.from_numpy(x))


def test_to_model_input_area_downsampling():
    const = np.full((2, 1, 28, 28), 0.75, dtype=np.float32)
    out = to_model_input(const, (1, 16, 16))
    assert out.shape == (2, 1, 16, 16)
    torch.testing.assert_close(out, torch.full((2, 1, 16, 16), 0.75))  # a constant image stays that constant
    # an integer factor averages exact 2x2 blocks
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    assert to_model_input(x, (1, 2, 2)).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    with pytest.raises(EdgekdError, match=r"cannot map task inputs of shape \(3, 8, 8\) to student input"):
        to_model_input(torch.zeros(1, 3, 8, 8), (1, 4, 4))


def test_same_seed_same_weights():
    config = StudentConfig("dscnn", {"width": 8, "depth": 2, "resolution": None})
    torch.manual_seed(123)
    a = build_student(config, (1, 8, 8), 10).state_dict()
    torch.manual_seed(123)
    b = build_student(config, (1, 8, 8), 10).state_dict()
    torch.manual_seed(124)
    c = build_student(config, (1, 8, 8), 10).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("family,params,shape", [
    ("dscnn", {"width": 8, "depth": 2, "resolution": None, "dropout": 0.2}, (1, 8, 8)),
    ("resnet", {"width": 8, "depth": 1, "stages": 2, "resolution": None}, (1, 8, 8)),
    ("mbv2", {"width": 8, "expand": 2, "kernel": 3, "d1": 1, "d2": 1, "d3": 1, "resolution": 16}, (1, 28, 28)),
    ("cnn1d", {"width": 8, "depth": 2, "kernel": 3}, (6, 100)),
])
def test_families_share_one_tail_and_keep_the_checkpoint_layout(family, params, shape):
    """Every conv family ends in StemBodyHead.finish: `stem.*`, `body.*`, then `head.fc.*` last (the key layout
    saved student.pt files load by), dropout from the config, and `feature_channels` = the classifier's input."""
    torch.manual_seed(0)
    model = build_student(StudentConfig(family, params), shape, 10)
    keys = list(model.state_dict())
    assert keys[-2:] == ["head.fc.weight", "head.fc.bias"]
    assert all(k.split(".")[0] in ("stem", "body") for k in keys[:-2])
    assert keys.index(next(k for k in keys if k.startswith("body."))) > max(
        (i for i, k in enumerate(keys) if k.startswith("stem.")), default=-1)  # stem first, then body
    assert model.head.fc.in_features == model.feature_channels and model.head.fc.out_features == 10
    assert model.head.dropout.p == params.get("dropout", 0.1)
    model.eval()
    x = torch.randn(2, *model_input_shape(model))
    torch.testing.assert_close(model(x), model.head(model.features(x)))


def test_candidates_never_upsample():
    dscnn = FAMILIES["dscnn"]
    assert {c["resolution"] for c in dscnn.candidates((1, 8, 8))} == {None}
    assert {c["resolution"] for c in dscnn.candidates((1, 28, 28))} == {None, 20, 16}
    assert {c["resolution"] for c in dscnn.candidates((1, 16, 16))} == {None}  # 16 would only repeat None
    assert len(dscnn.candidates((1, 28, 28))) == 7 * 5 * 3 and len(dscnn.candidates((1, 8, 8))) == 7 * 5
    assert len(FAMILIES["cnn1d"].candidates((6, 100))) == 6 * 3 * 3


@pytest.mark.parametrize("task_shape", [(1, 28, 10), (1, 10, 28), (3, 6, 5)])
def test_candidates_never_upsample_non_square_images(task_shape):
    """User .npz / image-folder tasks may be non-square (e.g. (3, 6, 5)); no student may take a larger input.

    Bug: Family.candidates compares the resolution with max(H, W), and DSCNN/SmallResNet build a square
    (res, res) input from task_shape[1] alone, so a 28x10 task gets a 28x28 (or 20x20, 16x16) student.
    """
    too_big = set()
    for family in families_for("image"):
        for params in family.candidates(task_shape):
            shape = model_input_shape(build_student(StudentConfig(family.name, params), task_shape, 3))
            if any(s > t for s, t in zip(shape[1:], task_shape[1:], strict=True)):
                too_big.add((family.name, str(params.get("resolution")), shape))
    assert not too_big, f"students upsample a {task_shape} task: {sorted(too_big)}"


@pytest.mark.parametrize(("size", "kernel", "stride", "pad"), [
    (28, 3, 2, 0),  # SAME would be asymmetric: VALID
    (13, 3, 2, 1),
    (28, 3, 1, 1),
    (100, 5, 2, 0),
    (100, 5, 1, 2),
    (8, 1, 1, 0),
    (7, 3, 2, 1),
    (8, 3, 2, 0),
])
def test_same_or_valid_values(size, kernel, stride, pad):
    assert same_or_valid(size, kernel, stride) == pad


def test_same_or_valid_never_needs_a_pad_op():
    for size in range(1, 41):
        for kernel in (1, 3, 5, 7):
            for stride in (1, 2):
                pad = same_or_valid(size, kernel, stride)
                assert not needs_pad_op(size, kernel, stride, pad), (size, kernel, stride, pad)
                if pad:  # SAME: the output is ceil(size / stride), as TFLite computes it
                    assert conv_out(size, kernel, stride, pad) == -(-size // stride)


# ---------------------------------------------------------------- converted graphs (slow)

def smallest(family: str, task_shape: tuple[int, ...]) -> dict:
    """The candidate with the fewest parameters, then the smallest input."""
    def size(params: dict) -> tuple[int, int]:
        model = build_student(StudentConfig(family, params), task_shape, 10)
        return sum(p.numel() for p in model.parameters()), math.prod(model_input_shape(model))

    return min(FAMILIES[family].candidates(task_shape), key=size)


CONVERT = [("dscnn", (1, 28, 28)), ("resnet", (1, 28, 28)), ("mlp", (1, 28, 28)), ("mlp", (6, 100)),
           ("cnn1d", (6, 100)), ("mbv2", (1, 28, 28))]


@pytest.mark.slow
@pytest.mark.parametrize(("family", "task_shape"), CONVERT,
                         ids=[f"{f}-{'x'.join(map(str, s))}" for f, s in CONVERT])
def test_smallest_candidate_converts_to_a_clean_int8_graph(family, task_shape, tmp_path: Path):
    from edgekd.export.tflite import export_tflite_int8

    allowed = set(load_target("nrf52840-dk").operators)
    params = smallest(family, task_shape)
    torch.manual_seed(0)
    model = build_student(StudentConfig(family, params), task_shape, 10).eval()
    shape = model_input_shape(model)
    calib = np.random.default_rng(0).standard_normal((16, *shape)).astype(np.float32)
    art = export_tflite_int8(model, shape, calib, tmp_path / "s.tflite", channels_last=model.channels_last_input)
    graph = art.graph
    assert set(graph.ops) <= allowed, f"{family} {params}: {sorted(set(graph.ops) - allowed)} not on the MCU"
    assert graph.float_islands == []
    assert "PAD" not in graph.ops and "TRANSPOSE" not in graph.ops
    assert graph.input.dtype == "int8" and graph.output.dtype == "int8" and graph.fully_integer
    assert graph.output.shape == (1, 10)
    if family == "cnn1d":
        assert graph.input.shape == (1, 1, task_shape[1], task_shape[0])  # (1, 1, L, C): time-major
    elif family == "mlp":
        assert graph.input.shape == (1, *task_shape)  # flattened in PyTorch order, no layout change
    else:
        c, h, w = shape
        assert graph.input.shape == (1, h, w, c)  # NHWC
    assert art.bytes == Path(art.path).stat().st_size > 0 and len(art.sha256) == 64


# ---------------------------------------------------------------- inverted-residual family (mbv2)

MBV2 = {"width": 8, "expand": 6, "kernel": 7, "d1": 1, "d2": 2, "d3": 1, "resolution": 20}


def test_mbv2_structure_by_hand():
    model = build_student(StudentConfig("mbv2", MBV2), (1, 28, 28), 10)
    assert model_input_shape(model) == (1, 20, 20)
    blocks = list(model.body)
    # stage channels 8, 16, 32; stride 2 at the first block of stages 2 and 3; identity shortcut only within
    assert [(b.body[-1][0].out_channels, b.body[-2][0].stride[0], b.residual) for b in blocks] == [
        (8, 1, True), (16, 2, False), (16, 1, True), (32, 2, False)]
    dw = [b.body[-2][0] for b in blocks]
    assert all(c.kernel_size == (7, 7) and c.groups == c.in_channels == 6 * b.body[0][0].in_channels
               for c, b in zip(dw, blocks, strict=True))
    # expand 1 drops the expansion conv: depthwise then project
    flat = build_student(StudentConfig("mbv2", MBV2 | {"expand": 1}), (1, 28, 28), 10)
    assert [len(b.body) for b in flat.body] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="kernel must be 3, 5 or 7"):
        build_student(StudentConfig("mbv2", MBV2 | {"kernel": 4}), (1, 28, 28), 10)


@pytest.mark.parametrize("task_shape", [(1, 28, 28), (1, 8, 8)])
def test_mbv2_space_builds_and_runs(task_shape):
    """Every 37th config of the search space builds and runs, kernel 7 on small maps included."""
    for params in FAMILIES["mbv2"].candidates(task_shape, space=True)[::37]:
        model = build_student(StudentConfig("mbv2", params), task_shape, 10).eval()
        with torch.no_grad():
            assert tuple(model(torch.zeros(2, *model_input_shape(model))).shape) == (2, 10), params
        assert all(b.kernel <= params["kernel"] for b in model.body)
    tiny = build_student(StudentConfig("mbv2", MBV2 | {"resolution": 16}), (1, 28, 28), 10)
    # 16x16 -> stem (VALID 3x3 stride 2) 7x7; 7x7 stride 2 is symmetric SAME, so kernel 7; the last strided block
    # sees an even 4x4 map, where SAME would be asymmetric: VALID with a 3x3 kernel (7x7 would not even fit)
    assert [b.kernel for b in tiny.body] == [7, 7, 7, 3]
    assert [b.out_size for b in tiny.body] == [(7, 7), (4, 4), (4, 4), (1, 1)]


def test_mbv2_space_is_larger_than_its_grid_and_costs_clean():
    from edgekd.costmodel import analyze

    fam = FAMILIES["mbv2"]
    grid, space = fam.candidates((1, 28, 28)), fam.candidates((1, 28, 28), space=True)
    assert len(grid) == 24 and len(space) == 5 * 5 * 3 * 2 * 3 * 3 * 5
    assert {p["kernel"] for p in space} == {3, 5, 7} and {p["expand"] for p in space} == {1, 2, 3, 4, 6}
    assert len(fam.candidates((1, 8, 8), space=True)) == len(space) // 5  # resolution caps >= 8 dropped
    model = build_student(StudentConfig("mbv2", MBV2), (1, 28, 28), 10)
    report = analyze(model, model_input_shape(model))
    assert report.ops == ["ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"]
    assert report.ops == sorted(set(report.ops) & set(load_target("nrf52840-dk").operators))
    # BatchNorm folds: every conv gets a bias per output channel; the classifier has 10
    assert sum(ly.params for ly in report.layers) == sum(p.numel() for p in model.parameters() if p.dim() > 1) + sum(
        m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)) + 10


# ---------------------------------------------------------------- the user's own student

USER_CODE = '''
import torch
from torch import nn
import torch.nn.functional as F


class Tiny(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)
        self.act = act

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def good():
    return Tiny(nn.ReLU())


def sigmoid():
    return Tiny(nn.Sigmoid())


def gelu():
    return Tiny(nn.GELU())


def wrong_classes():
    model = Tiny(nn.ReLU())
    model.fc = nn.Linear(16, 3)
    return model
'''


@pytest.fixture
def user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from edgekd.students.user import ALLOW_ENV

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    path = tmp_path / "mymodel.py"
    path.write_text(USER_CODE)
    return path


def test_user_student_config_pins_the_code_and_checks_the_output(user_file: Path):
    from edgekd.students.user import ALLOW_ENV, student_config

    config = student_config(f"{user_file}:good", (1, 8, 8), 10)
    assert config.family == "user" and config.params["kind"] == "factory"
    assert config.params["ref"] == f"{user_file.resolve()}:good"
    assert len(config.params["sha256"]) == 64 and f"{user_file.resolve()}:good" in os.environ[ALLOW_ENV]
    model = build_student(config, (1, 8, 8), 10)
    assert model_input_shape(model) == (1, 8, 8) and model.channels_last_input is True
    with pytest.raises(EdgekdError, match=r"outputs \(2, 3\) for a batch of 2, but the task needs \(2, 10\)"):
        student_config(f"{user_file}:wrong_classes", (1, 8, 8), 10)
    with pytest.raises(EdgekdError, match="has no function 'nope'"):
        student_config(f"{user_file}:nope", (1, 8, 8), 10)
    with pytest.raises(EdgekdError, match="no such file"):
        student_config(f"{user_file.parent}/missing.py:good", (1, 8, 8), 10)
    user_file.write_text(USER_CODE + "\n# edited\n")  # weights trained for the old code must not load into it
    with pytest.raises(EdgekdError, match="changed since this student was planned/trained"):
        build_student(config, (1, 8, 8), 10)


def test_user_code_is_imported_only_when_named(user_file: Path, monkeypatch: pytest.MonkeyPatch):
    """A student.pt naming code (someone else's file) never imports it on its own."""
    from edgekd.students.user import ALLOW_ENV, student_config

    config = student_config(f"{user_file}:good", (1, 8, 8), 10)
    monkeypatch.delenv(ALLOW_ENV)
    with pytest.raises(EdgekdError, match="edgekd imports code only when told to: pass --student"):
        build_student(config, (1, 8, 8), 10)
    monkeypatch.setenv(ALLOW_ENV, f"other.py:x; {config.params['ref']}")
    assert model_input_shape(build_student(config, (1, 8, 8), 10)) == (1, 8, 8)


def test_user_pt2_student_is_read_safely_and_trains(tmp_path: Path):
    from edgekd.distill.train import set_training
    from edgekd.students.user import student_config

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10))
    program = torch.export.export(net, (torch.zeros(2, 1, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "student.pt2")
    config = student_config(str(tmp_path / "student.pt2"), (1, 8, 8), 10)
    assert config.params["kind"] == "pt2"
    model = build_student(config, (1, 8, 8), 10)
    x = torch.randn(4, 1, 8, 8)
    set_training(model, False)
    before = model(x)
    assert torch.equal(model(x), before)  # eval mode: BatchNorm uses running stats
    set_training(model, True)
    out = model(x)  # train mode: batch statistics, and the running stats move
    assert not torch.allclose(out, before)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    set_training(model, False)
    assert not torch.equal(model(x), before)
    (tmp_path / "student.pt2").write_bytes(b"PK\x03\x04 not a program")
    with pytest.raises(EdgekdError, match="student.pt2"):
        build_student(config, (1, 8, 8), 10)


def test_user_student_refused_before_training_names_operator_or_budget(user_file: Path):
    from edgekd.data import get_spec
    from edgekd.planner import OverBudget, check_student
    from edgekd.students.user import student_config

    nrf, spec = load_target("nrf52840-dk"), get_spec("digits")
    with pytest.raises(EdgekdError, match=r"needs operator\(s\) LOGISTIC that nrf52840-dk does not run") as exc:
        check_student(student_config(f"{user_file}:sigmoid", (1, 8, 8), 10), nrf, spec)
    assert exc.value.exit_code == 2
    with pytest.raises(EdgekdError, match=r"needs operator\(s\) .*aten.gelu.default"):
        check_student(student_config(f"{user_file}:gelu", (1, 8, 8), 10), nrf, spec)
    good = student_config(f"{user_file}:good", (1, 8, 8), 10)
    with pytest.raises(OverBudget, match=r"does not fit nrf52840-dk: RAM .* > budget 1.0 KiB") as exc:
        check_student(good, nrf.with_budgets(ram="1KiB"), spec)
    assert exc.value.exit_code == 1
    cand = check_student(good, nrf, spec)
    assert cand.fits and cand.label() == f"user({user_file.resolve()}:good)"
    assert cand.macs == 8 * 8 * (8 * 9 + 16 * 8 * 9) + 16 * 10 + 8 * 8 * 16  # convs + FC + the MEAN's reads


def test_build_refuses_a_user_student_before_training(user_file: Path, tmp_path: Path):
    """Exit 2 naming the operator, exit 1 naming the budget: no teacher, no student, nothing trained."""
    from click.testing import CliRunner

    from edgekd.cli import main

    out = tmp_path / "b"
    base = ["build", "--target", "nrf52840-dk", "--task", "digits", "--fast", "--emulator", "none", "--out", str(out)]
    r = CliRunner().invoke(main, [*base, "--student", f"{user_file}:sigmoid"])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "needs operator(s) LOGISTIC" in r.stderr
    r = CliRunner().invoke(main, [*base, "--student", f"{user_file}:good", "--ram-budget", "2KiB"])
    assert r.exit_code == 1 and "RAM" in r.stderr and "> budget 2.0 KiB" in r.stderr, r.output
    assert not (out / "teacher").exists() and not (out / "student").exists()
    r = CliRunner().invoke(main, [*base, "--student", f"{user_file}:good", "--search", "3"])
    assert r.exit_code == 2 and "there is one student" in r.stderr


@pytest.mark.slow
def test_fitting_user_student_is_built_end_to_end(user_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """--student through plan, distill, export (int8 .tflite + C), verify on LiteRT and TFLite Micro, package."""
    from edgekd.build import build
    from edgekd.io import read_json

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    report = build("nrf52840-dk", task="digits", fast=True, emulator="none", epochs=2, teacher_epochs=1,
                   student=f"{user_file}:good", out=tmp_path / "b")
    assert report.passed
    plan = read_json(tmp_path / "b" / "plan.json")
    assert plan["student"]["family"] == "user" and plan["candidates_total"] == 1
    assert plan["student"]["config"]["ref"] == f"{user_file.resolve()}:good"
    distilled = read_json(tmp_path / "b" / "student" / "distill.json")
    assert distilled["student"]["family"] == "user" and distilled["student"]["params"] == (
        8 * 9 + 8 * 16 * 9 + 2 * (8 + 16) + 16 * 10 + 10)  # PyTorch parameters: convs, BatchNorms, classifier
    runs = {(a["format"], a["runtime"]) for a in report.to_json()["artifacts"]}
    assert {("tflite", "litert"), ("tflite", "tflm"), ("c", "tflm")} <= runs
    assert (tmp_path / "b" / str(report.bundle)).is_file()  # the bundle, named relative to the build folder


def test_distill_takes_a_user_student_with_builds_checks(user_file: Path, tmp_path: Path):
    """`edgekd distill --student`: refused before training like `build --student` (exit 2 operator, exit 1
    budget, exit 2 with --search N); a fitting one is distilled and saved as the `user` family."""
    from click.testing import CliRunner

    from edgekd.cli import main
    from edgekd.io import read_json

    out = tmp_path / "d"
    base = ["distill", "--target", "nrf52840-dk", "--task", "digits", "--loss", "ce", "--out", str(out)]
    r = CliRunner().invoke(main, [*base, "--student", f"{user_file}:sigmoid"])
    assert r.exit_code == 2 and "needs operator(s) LOGISTIC that nrf52840-dk does not run" in r.stderr, r.output
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    r = CliRunner().invoke(main, [*base, "--student", f"{user_file}:good", "--ram-budget", "2KiB"])
    assert r.exit_code == 1 and "> budget 2.0 KiB" in r.stderr, r.output
    r = CliRunner().invoke(main, [*base, "--student", f"{user_file}:good", "--search", "3"])
    assert r.exit_code == 2 and "there is one student" in r.stderr
    assert not out.exists()  # nothing trained, nothing written
    r = CliRunner().invoke(main, [*base, "--student", f"{user_file}:good", "--epochs", "6", "--limit", "600",
                                  "--lr", "0.02", "--no-int8-check", "--json"])
    assert r.exit_code == 0, r.output
    saved = read_json(out / "distill.json")
    assert saved["student"]["family"] == "user" and saved["student"]["config"]["ref"] == f"{user_file.resolve()}:good"
    assert saved["student"]["params"] == 8 * 9 + 8 * 16 * 9 + 2 * (8 + 16) + 16 * 10 + 10 and saved["fits"]
    assert 0.2 < saved["student"]["accuracy_float"] <= 1 and (out / "student.pt").is_file()  # above chance (0.1)
