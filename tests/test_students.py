"""Student families: they build for their task kinds, map task data to their inputs, never upsample, and
(slow) convert to int8 graphs a microcontroller profile accepts: no float islands, no PAD, no TRANSPOSE."""

from __future__ import annotations

import math
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
CASES = [(name, shape) for name, fam in sorted(FAMILIES.items()) for kind in fam.kinds for shape in SHAPES[kind]]


def test_registered_families_and_kinds():
    assert {"dscnn", "resnet", "cnn1d", "mlp"} <= set(FAMILIES)
    assert FAMILIES["dscnn"].kinds == ("image",) and FAMILIES["resnet"].kinds == ("image",)
    assert FAMILIES["cnn1d"].kinds == ("timeseries",)
    assert set(FAMILIES["mlp"].kinds) == {"image", "timeseries"}
    assert {f.name for f in families_for("timeseries")} >= {"cnn1d", "mlp"}
    assert "cnn1d" not in {f.name for f in families_for("image")}
    assert [f.name for f in families_for("image", ["mlp", "cnn1d"])] == ["mlp"]
    assert FAMILIES["mlp"].channels_last_input is False and FAMILIES["dscnn"].channels_last_input is True
    with pytest.raises(EdgekdError, match="unknown student family 'nope'; known: cnn1d, dscnn, mlp, resnet"):
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
           ("cnn1d", (6, 100))]


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
