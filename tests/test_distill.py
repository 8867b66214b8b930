"""Distillation loop: teachers, cached teacher outputs, resume, DDP, budgets, user teachers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import distill_fixtures
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgekd.cli import main
from edgekd.data import load_task
from edgekd.distill import augment, distill, load_student, train_student, train_teacher
from edgekd.distill.cache import TeacherCache
from edgekd.distill.losses import build_loss
from edgekd.distill.teachers import ResNetTeacher, Teacher, load_teacher
from edgekd.distill.train import TrainConfig, fit
from edgekd.errors import EdgekdError
from edgekd.students import StudentConfig, build_student

ROOT = Path(__file__).resolve().parent.parent
SMALL = StudentConfig("dscnn", {"width": 8, "depth": 2, "resolution": None})


isolated_teacher_cache = distill_fixtures.isolated_teacher_cache  # autouse: a fresh EDGEKD_CACHE per test
digits = distill_fixtures.digits


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "digits-teacher.pt"
    record = train_teacher("digits", path, epochs=3, limit=400, progress=False)
    assert record["test_accuracy"] > 0.5
    return path


def test_teacher_file_is_weights_only_and_records_accuracy(teacher_file: Path, digits) -> None:
    blob = torch.load(teacher_file, weights_only=True)
    assert blob["format"] == "edgekd-teacher/1" and blob["task"]["name"] == "digits"
    meta = json.loads(teacher_file.with_suffix(".pt.json").read_text())
    assert 0.5 < meta["test_accuracy"] <= 1.0 and meta["train_seconds"] > 0
    teacher = load_teacher(str(teacher_file), digits.spec)
    assert teacher.source == "edgekd" and len(teacher.sha256) == 64 and teacher.feature_layer == "stages"
    assert teacher.logits(torch.from_numpy(digits.x_test[:4])).shape == (4, 10)


def test_augmentation_draw_is_a_function_of_seed_and_epoch() -> None:
    policy = augment.Policy.for_task("fashion-mnist", "image")
    a, b, c = augment.draw(policy, 50, 0, 3), augment.draw(policy, 50, 0, 3), augment.draw(policy, 50, 0, 4)
    assert torch.equal(a.shifts, b.shifts) and torch.equal(a.flips, b.flips)
    assert not torch.equal(a.shifts, c.shifts)
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    d = augment.Draw(torch.tensor([[0, 1], [0, 0]]), torch.tensor([False, True]), torch.ones(2))
    out = augment.apply(x, torch.tensor([0, 1]), d, augment.Policy(shift=1, flip=True))
    assert torch.equal(out[0, 0, :, :3], x[0, 0, :, 1:])  # shifted one column left
    assert torch.equal(out[1, 0], x[1, 0].flip(1))  # mirrored
    assert not augment.Policy.for_task("digits", "image").flip  # digits are not mirror-symmetric


def test_teacher_cache_hits_and_matches_online_teacher(teacher_file: Path, digits) -> None:
    teacher = load_teacher(str(teacher_file), digits.spec)
    policy = augment.Policy.for_task("digits", "image")
    cache = TeacherCache(teacher, digits.x_train, digits.y_train, policy, aug_seed=0)
    first = cache.epoch_logits(2).clone()
    assert cache.stats.misses == 1 and cache.stats.hits == 0
    again = TeacherCache(teacher, digits.x_train, digits.y_train, policy, aug_seed=0)
    assert torch.equal(again.epoch_logits(2), first)
    assert again.stats.hits == 1 and again.stats.misses == 0
    idx = torch.tensor([3, 17, 42])
    draw = augment.draw(policy, len(digits.x_train), 0, 2)
    x_aug = augment.apply(torch.from_numpy(digits.x_train)[idx], idx, draw, policy)
    assert torch.allclose(cache(x_aug, 2, idx)[0], teacher.logits(x_aug), atol=1e-5)
    other = TeacherCache(teacher, digits.x_train, digits.y_train, policy, aug_seed=1)
    assert other.dir != cache.dir


def test_views_map_epochs_to_draws() -> None:
    shifts, still = augment.Policy(shift=2), augment.Policy()
    assert [augment.view(e, 0, shifts) for e in range(4)] == [0, 1, 2, 3]  # a fresh draw each epoch
    assert [augment.view(e, 3, shifts) for e in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [augment.view(e, 0, still) for e in range(3)] == [0, 0, 0]  # nothing varies: one draw
    assert [augment.view(e, 0, still, mixed=True) for e in range(3)] == [0, 1, 2]  # the mix still varies
    assert augment.views_used(10, 3, shifts) == [0, 1, 2] and augment.views_used(2, 3, shifts) == [0, 1]
    assert augment.views_used(5, 0, still) == [0] and augment.views_used(3, 0, shifts) == [0, 1, 2]


def _counting_teacher(digits) -> tuple[Teacher, list[int]]:
    """A small random teacher that counts the samples it is run on."""
    torch.manual_seed(0)
    module = ResNetTeacher(tuple(digits.spec.input_shape), 10, width=8, stages=2).eval()
    rows: list[int] = []
    module.register_forward_hook(lambda m, i, o: rows.append(len(o)))
    return Teacher(module, "1" * 64, "edgekd", "counting-teacher"), rows


@pytest.mark.parametrize(("policy", "views", "epochs", "passes"), [
    (augment.Policy(), 0, 3, 1),  # no augmentation: one pass, whatever the epochs
    (augment.Policy(shift=2), 2, 5, 2),  # two fixed views cycled over 5 epochs
    (augment.Policy(shift=2), 0, 3, 3),  # a fresh draw each epoch (the default)
])
def test_the_teacher_runs_once_per_draw_not_per_epoch(digits, policy: augment.Policy, views: int, epochs: int,
                                                      passes: int) -> None:
    teacher, rows = _counting_teacher(digits)
    n = len(digits.x_train)
    cfg = TrainConfig(epochs=epochs, batch_size=64, views=views)
    students = []
    for _ in range(2):  # the second run reads every draw from the cache: the teacher does not run again
        cache = TeacherCache(teacher, digits.x_train, None, policy, aug_seed=0)
        torch.manual_seed(0)
        model = build_student(SMALL, digits.spec.input_shape, 10)
        fit(model, digits.x_train, digits.y_train, digits.x_val, digits.y_val, tuple(model.input_shape),
            build_loss("kd"), cfg, policy, teacher=cache, progress=False)
        students.append(model)
    assert sum(rows) == passes * n  # one teacher pass over the training set per draw, in the first run only
    assert cache.stats.hits == passes and cache.stats.misses == 0
    assert sorted(p.name for p in cache.dir.glob("epoch-*.npy")) == [f"epoch-{v:04d}.npy" for v in range(passes)]
    a, b = (m.state_dict() for m in students)
    assert all(torch.equal(v, b[k]) for k, v in a.items())  # deterministic: same seed, same student


def test_a_cycled_view_gives_the_teacher_output_on_the_image_the_student_sees(digits) -> None:
    teacher, _ = _counting_teacher(digits)
    policy = augment.Policy(shift=2)
    cache = TeacherCache(teacher, digits.x_train, None, policy, aug_seed=0)
    seen: list[int] = []

    def checked(x_aug: torch.Tensor, view: int, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, _ = cache(x_aug, view, idx)
        assert torch.allclose(logits, teacher.logits(x_aug), atol=1e-5)
        seen.append(view)
        return logits, None

    model = build_student(SMALL, digits.spec.input_shape, 10)
    fit(model, digits.x_train, digits.y_train, digits.x_val, digits.y_val, tuple(model.input_shape),
        build_loss("kd"), TrainConfig(epochs=4, batch_size=128, views=2), policy, teacher=checked, progress=False)
    steps = -(-len(digits.x_train) // 128)
    assert seen == [0] * steps + [1] * steps + [0] * steps + [1] * steps


def test_a_checkpoint_without_later_settings_resumes_with_their_defaults(tmp_path: Path, digits) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64)
    torch.manual_seed(0)
    model = build_student(SMALL, digits.spec.input_shape, 10)
    _fit(model, digits, tmp_path, cfg, stop_after=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["config"]["views"], state["config"]["mix"]  # as edgekd wrote it before --mix and --views
    torch.save(state, tmp_path / "checkpoint.pt")
    assert _fit(model, digits, tmp_path, cfg, resume=True).resumed_from == 1
    with pytest.raises(EdgekdError, match="other settings"):
        _fit(model, digits, tmp_path, TrainConfig(epochs=2, batch_size=64, views=2), resume=True)


def _fit(model: nn.Module, splits, out: Path | None, cfg: TrainConfig, **kw):
    return fit(model, splits.x_train, splits.y_train, splits.x_val, splits.y_val, tuple(model.input_shape),
               build_loss("ce"), cfg, augment.Policy.for_task("digits", "image"), out, progress=False, **kw)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path: Path, digits) -> None:
    cfg = TrainConfig(epochs=4, batch_size=64, seed=3)
    torch.manual_seed(0)
    straight = build_student(SMALL, digits.spec.input_shape, 10)
    (tmp_path / "a").mkdir()
    _fit(straight, digits, tmp_path / "a", cfg)
    torch.manual_seed(0)
    interrupted = build_student(SMALL, digits.spec.input_shape, 10)
    (tmp_path / "b").mkdir()
    first = _fit(interrupted, digits, tmp_path / "b", cfg, stop_after=2)
    assert first.epochs_run == 2
    torch.manual_seed(123)  # a fresh process would not share RNG state either
    resumed = build_student(SMALL, digits.spec.input_shape, 10)
    result = _fit(resumed, digits, tmp_path / "b", cfg, resume=True)
    assert result.resumed_from == 2 and result.epochs_run == 4
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_resume_refuses_a_checkpoint_made_with_other_settings(tmp_path: Path, digits) -> None:
    torch.manual_seed(0)
    model = build_student(SMALL, digits.spec.input_shape, 10)
    _fit(model, digits, tmp_path, TrainConfig(epochs=2, batch_size=64), stop_after=1)
    with pytest.raises(EdgekdError, match="other settings"):
        _fit(model, digits, tmp_path, TrainConfig(epochs=2, batch_size=32), resume=True)


def test_same_seed_gives_the_same_student(digits) -> None:
    cfg = TrainConfig(epochs=1, batch_size=64, seed=5)
    a, _ = train_student(SMALL, digits, None, "ce", cfg, progress=False)
    b, _ = train_student(SMALL, digits, None, "ce", cfg, progress=False)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_feature_distillation_runs_the_teacher_online(teacher_file: Path, digits, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Feature maps are not cached: the teacher runs on every training batch, and nothing lands in the cache."""
    import math

    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    teacher = load_teacher(str(teacher_file), digits.spec)
    calls = []
    handle = teacher.module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        _, record = train_student(SMALL, digits, teacher, "feature", TrainConfig(epochs=2, batch_size=64),
                                  progress=False)
    finally:
        handle.remove()
    train_batches = [c for c in calls if c <= 64]  # validation passes use larger batches
    assert len(train_batches) >= 2 * math.floor(len(digits.x_train) / 64)
    assert sum(train_batches) >= 2 * len(digits.x_train) - 2 * 64
    assert not (tmp_path / "cache" / "teacher-outputs").exists()
    assert all(h["loss_hint"] > 0 for h in record["history"])
    assert record["history"][1]["loss_hint"] < record["history"][0]["loss_hint"]  # the hint is being learnt


@pytest.mark.slow  # two distill() runs, 39 s on shared cores; CI runs it (quick: cache and resume tests)
def test_distill_end_to_end_writes_student_and_report(tmp_path: Path, teacher_file: Path) -> None:
    out = tmp_path / "run"
    result = distill("nrf52840-dk", "digits", str(teacher_file), out, loss="kd", epochs=2, baseline=True,
                     limit=400, families=["dscnn"], verify_int8=False, progress=False)
    saved = json.loads((out / "distill.json").read_text())
    assert saved["student"]["family"] == "dscnn" and saved["fits"] is True
    assert 0 < saved["student"]["accuracy_float"] <= 1 and 0 < saved["student"]["accuracy_no_teacher"] <= 1
    assert saved["teacher"]["test_accuracy"] > 0.5 and saved["teacher_cache"]["used"] is True
    assert saved["teacher_cache"]["misses"] == 2  # one file per epoch's augmentation draw
    assert set(saved["timings_s"]) >= {"plan", "train", "baseline", "total"}
    model, blob = load_student(out)
    assert blob["family"] == "dscnn" and model(torch.zeros(2, *blob["input_shape"])).shape == (2, 10)
    # A second run of another seed reuses every cached teacher output.
    again = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path / "run2", loss="kd", epochs=2, seed=1,
                    limit=400, families=["dscnn"], verify_int8=False, progress=False)
    assert again["teacher_cache"]["hits"] == 2 and again["teacher_cache"]["misses"] == 0
    assert result["student"]["config"] == again["student"]["config"]


@pytest.mark.slow
def test_distill_with_qat_exports_a_fully_integer_model(tmp_path: Path, teacher_file: Path) -> None:
    result = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path, loss="kd", epochs=2, qat=True,
                     qat_epochs=1, limit=400, families=["dscnn"], progress=False)
    m = result["measured"]
    assert m["float_islands"] == [] and m["arena_bytes"] > 0 and m["tflite_bytes"] > 0
    assert result["qat"]["epochs"] == 1 and 0 < m["accuracy_int8"] <= 1
    assert abs(m["accuracy_int8"] - result["qat"]["fake_quant_test_accuracy"]) < 0.05
    assert m["flash_bytes"] <= result["budgets"]["flash_bytes"] and m["ram_bytes"] <= result["budgets"]["ram_bytes"]


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_distill_refuses_when_nothing_fits(tmp_path: Path, teacher_file: Path) -> None:
    result = CliRunner().invoke(main, ["distill", "--target", "nrf52840-dk", "--task", "digits", "--teacher",
                                       str(teacher_file), "--out", str(tmp_path / "x"), "--ram-budget", "1KB"])
    assert result.exit_code == 2
    assert "RAM" in result.output and "over by" in result.output
    assert not (tmp_path / "x" / "student.pt").exists()


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_distill_needs_a_teacher_for_kd(tmp_path: Path) -> None:
    with pytest.raises(EdgekdError, match="needs --teacher"):
        distill("nrf52840-dk", "digits", None, tmp_path, loss="kd", epochs=1, limit=200, progress=False)


# ------------------------------------------------------------------ user teachers

FACTORY = """
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.fc = nn.Linear(32, classes)
    def forward(self, x):
        return self.fc(self.body(x))

def good():
    return Tiny()

def five_classes():
    return Tiny(5)

def not_a_module():
    return 42
"""


@pytest.fixture()
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"user_teacher_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_factory_teacher_with_weights(tmp_path: Path, factory_module: str, digits) -> None:
    torch.manual_seed(0)
    module = __import__(factory_module)
    model = module.good()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    teacher = load_teacher(f"{factory_module}:good", digits.spec, str(tmp_path / "w.pt"), "body")
    x = torch.from_numpy(digits.x_test[:3])
    assert teacher.source == "factory" and torch.allclose(teacher.logits(x), model(x))
    with pytest.raises(EdgekdError, match=r"outputs \(2, 5\).*needs \(2, 10\)"):
        load_teacher(f"{factory_module}:five_classes", digits.spec)
    with pytest.raises(EdgekdError, match="not a torch.nn.Module"):
        load_teacher(f"{factory_module}:not_a_module", digits.spec)
    with pytest.raises(EdgekdError, match="cannot import"):
        load_teacher(f"{factory_module}:missing", digits.spec)
    with pytest.raises(EdgekdError, match="no such file"):
        load_teacher(f"{factory_module}:good", digits.spec, str(tmp_path / "nope.pt"))
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(EdgekdError, match="does not match"):
        load_teacher(f"{factory_module}:good", digits.spec, str(tmp_path / "bad.pt"))
    with pytest.raises(EdgekdError, match="no such module"):
        load_teacher(f"{factory_module}:good", digits.spec, None, "nope")


def test_pt2_teacher_and_unsafe_files(tmp_path: Path, factory_module: str, digits, teacher_file: Path) -> None:
    model = __import__(factory_module).good().eval()
    program = torch.export.export(model, (torch.zeros(2, 1, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("b", min=1, max=4096)},))
    torch.export.save(program, tmp_path / "t.pt2")
    teacher = load_teacher(str(tmp_path / "t.pt2"), digits.spec)
    assert teacher.source == "pt2" and teacher.logits(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    with pytest.raises(EdgekdError, match="logits only"):
        load_teacher(str(tmp_path / "t.pt2"), digits.spec, feature_layer="body")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": "edgekd-teacher/1", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(EdgekdError, match="not a loadable teacher file"):
        load_teacher(str(tmp_path / "evil.pt"), digits.spec)
    fm = load_task("fashion-mnist", limit=50) if Path("/usr/share/datasets/fashion-mnist").is_dir() else None
    if fm is not None:
        with pytest.raises(EdgekdError, match="was trained for task 'digits'"):
            load_teacher(str(teacher_file), fm.spec)
    with pytest.raises(EdgekdError, match="no such file"):
        load_teacher(str(tmp_path / "missing.pt"), digits.spec)


@pytest.mark.slow
def test_two_process_ddp_run(tmp_path: Path, teacher_file: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", str(29500 + os.getpid() % 1000),
                           "-m", "edgekd.cli", "distill", "--target", "nrf52840-dk", "--task", "digits",
                           "--teacher", str(teacher_file), "--out", str(out), "--epochs", "6", "--batch-size", "32",
                           "--limit", "400",
                           "--family", "dscnn", "--no-int8-check", "--json"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((out / "distill.json").read_text())
    assert saved["world_size"] == 2
    assert 0.7 < saved["student"]["accuracy_float"] <= 1  # single-process with these settings: ~0.93
    assert len(saved["training"]["history"]) == 6
    assert json.loads(proc.stdout)["world_size"] == 2  # only rank 0 prints


def test_student_output_of_digits_is_well_formed(digits) -> None:
    model = build_student(SMALL, digits.spec.input_shape, 10)
    assert np.isfinite(model(torch.from_numpy(digits.x_test[:5])).detach().numpy()).all()


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_search_tries_the_top_candidates_and_keeps_the_best(tmp_path: Path, teacher_file: Path) -> None:
    result = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path, loss="kd", epochs=4, search=2,
                     limit=400, families=["dscnn"], verify_int8=False, progress=False)
    rows = result["candidates"]
    assert len(rows) == 2 and all(r["epochs"] == 1 and 0 <= r["val_accuracy"] <= 1 for r in rows)
    best = max(rows, key=lambda r: (r["val_accuracy"], r["macs"]))
    assert result["student"]["config"] == best["config"]
    assert "search" in result["timings_s"]


# ------------------------------------------------------------------ trust: damaged files, full disks, hooks

class _Evil:
    """Unpickling it runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _damage(path: Path, how: str, marker: Path) -> None:
    """Replace ``path`` (a real torch file) with a damaged or unsafe one."""
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif how == "unsafe":
        torch.save({"format": "edgekd-student/1", "epoch": _Evil(marker)}, path)
    elif how == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    elif how == "wrong_state_dict":
        blob = torch.load(path, weights_only=True)
        key = "model" if "model" in blob else "state_dict"
        blob[key] = {k + ".renamed": v for k, v in blob[key].items()}
        torch.save(blob, path)


DAMAGE = ["empty", "truncated", "garbage", "unsafe", "foreign", "wrong_state_dict"]


@pytest.mark.parametrize("how", DAMAGE)
def test_resume_refuses_a_damaged_or_unsafe_checkpoint(tmp_path: Path, digits, how: str) -> None:
    cfg = TrainConfig(epochs=2, batch_size=64)
    torch.manual_seed(0)
    _fit(build_student(SMALL, digits.spec.input_shape, 10), digits, tmp_path, cfg, stop_after=1)
    marker = tmp_path / "MARKER"
    _damage(tmp_path / "checkpoint.pt", how, marker)
    with pytest.raises(EdgekdError, match=r"checkpoint\.pt: ") as err:
        _fit(build_student(SMALL, digits.spec.input_shape, 10), digits, tmp_path, cfg, resume=True)
    assert "\n" not in str(err.value) and not marker.exists()
    if how == "unsafe":
        assert "would call" in str(err.value)


def test_cli_resume_with_an_empty_checkpoint_is_exit_2_and_one_line(tmp_path: Path, cost_cache: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    result = CliRunner().invoke(main, ["distill", "--target", "nrf52840-dk", "--task", "digits", "--limit", "200",
                                       "--loss", "ce", "--epochs", "1", "--family", "dscnn", "--no-int8-check",
                                       "--out", str(out), "--resume"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint.pt: not a usable checkpoint" in lines[0], result.stderr
    assert "Aborted" not in result.output and "Traceback" not in result.output


@pytest.fixture()
def student_dir(tmp_path: Path, digits) -> Path:
    from edgekd.distill import save_student

    torch.manual_seed(0)
    out = tmp_path / "student"
    save_student(build_student(SMALL, digits.spec.input_shape, 10), SMALL, digits, out / "student.pt")
    return out


@pytest.mark.parametrize("how", DAMAGE)
def test_load_student_refuses_damaged_or_unsafe_files(student_dir: Path, how: str) -> None:
    marker = student_dir / "MARKER"
    _damage(student_dir / "student.pt", how, marker)
    with pytest.raises(EdgekdError, match=r"student\.pt: ") as err:
        load_student(student_dir)
    assert "\n" not in str(err.value) and not marker.exists()


def test_cli_on_an_empty_student_is_exit_2_and_one_line(student_dir: Path) -> None:
    model, _ = load_student(student_dir)  # intact first
    (student_dir / "student.pt").write_bytes(b"")
    result = CliRunner().invoke(main, ["latency", "--target", "nrf52840-dk", str(student_dir)])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "not a loadable student file" in result.stderr
    assert "Aborted" not in result.output


def test_a_failed_checkpoint_write_leaves_the_old_one_and_no_temp_file(tmp_path: Path, digits,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig(epochs=3, batch_size=64)
    torch.manual_seed(0)
    _fit(build_student(SMALL, digits.spec.input_shape, 10), digits, tmp_path, cfg, stop_after=1)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):  # write part of the file, then run out of space
        real_save(obj, f, *args, **kwargs)
        f.seek(100)
        f.truncate()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f.name)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError) as err:
        _fit(build_student(SMALL, digits.spec.input_shape, 10), digits, tmp_path, cfg, resume=True)
    assert err.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def _no_training(*args, **kwargs):
    raise AssertionError("training started although --out cannot be written")


def test_teacher_out_that_cannot_be_written_fails_before_training(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import edgekd.distill as distill_module

    monkeypatch.setattr(distill_module, "fit", _no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(EdgekdError, match="--out"):
        train_teacher("digits", blocker / "teacher.pt", epochs=1, limit=200, progress=False)
    result = CliRunner().invoke(main, ["teacher", "--task", "digits", "--limit", "200",
                                       "--out", str(blocker / "teacher.pt")])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    # A read-only file system (root ignores chmod, so the kernel's answer is simulated): same, and nothing left.
    readonly = tmp_path / "ro"
    readonly.mkdir()
    real_open = os.open

    def erofs(path, *args, **kwargs):
        if str(path).startswith(str(readonly)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", erofs)
    with pytest.raises(EdgekdError, match="(?i)read-only file system"):
        train_teacher("digits", readonly / "teacher.pt", epochs=1, limit=200, progress=False)
    with pytest.raises(EdgekdError, match="(?i)read-only file system"):
        distill("nrf52840-dk", "digits", None, readonly / "run", loss="ce", epochs=1, limit=200, progress=False)
    assert [p for p in readonly.rglob("*") if not p.is_dir()] == []  # (mkdir is not simulated to fail)


def test_distill_out_that_cannot_be_written_fails_before_loading_the_teacher(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgekd.distill as distill_module

    monkeypatch.setattr(distill_module, "fit", _no_training)
    monkeypatch.setattr(distill_module, "load_teacher", _no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(EdgekdError, match="--out"):
        distill("nrf52840-dk", "digits", "teacher.pt", blocker / "run", loss="kd", epochs=1, limit=200,
                progress=False)


@pytest.mark.slow  # several CLI runs or a re-verify: seconds each; CI runs it
def test_feature_search_leaves_no_hooks_on_teacher_or_student(tmp_path: Path, teacher_file: Path, digits,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import edgekd.distill as distill_module

    loaded: list = []

    def keep(*args, **kwargs):
        loaded.append(load_teacher(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(distill_module, "load_teacher", keep)
    result = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path, loss="feature", epochs=4, search=2,
                     limit=400, families=["dscnn"], verify_int8=False, progress=False)
    assert len(result["candidates"]) == 2 and "loss_hint" in result["training"]["history"][0]
    teacher = loaded[0]
    assert all(not m._forward_hooks for m in teacher.module.modules())  # 3 runs used to leave 3 hooks
    student, _ = train_student(SMALL, digits, teacher, "feature", TrainConfig(epochs=1, batch_size=64),
                               progress=False)
    assert all(not m._forward_hooks for m in [*student.modules(), *teacher.module.modules()])


@pytest.mark.slow  # two distill() runs, 26 s on shared cores; CI runs it (quick: tests/test_cache.py)
def test_a_tampered_cache_entry_is_repaired_and_reported(tmp_path: Path, teacher_file: Path) -> None:
    first = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path / "a", loss="kd", epochs=2, limit=400,
                    families=["dscnn"], verify_int8=False, progress=False)
    entry = Path(first["teacher_cache"]["dir"]) / "epoch-0001.npy"
    original = np.load(entry)
    np.save(entry, np.random.default_rng(0).normal(size=original.shape).astype(np.float32))
    again = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path / "b", loss="kd", epochs=2, limit=400,
                    families=["dscnn"], verify_int8=False, progress=False)
    saved = json.loads((tmp_path / "b" / "distill.json").read_text())["teacher_cache"]
    assert (saved["hits"], saved["misses"], saved["repaired"]) == (1, 1, 1)
    assert np.array_equal(np.load(entry), original)
    assert again["student"]["accuracy_float"] == first["student"]["accuracy_float"]


# ------------------------------------------------------------------ teacher checks, shipping, unlabelled data

CONSTANT = """
import torch
from torch import nn

class Constant(nn.Module):
    '''Always answers class 0: a teacher at chance level.'''
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([5.0] + [0.0] * 9))
    def forward(self, x):
        return self.bias.expand(len(x), 10)

def constant():
    return Constant()
"""


class _Rolled(nn.Module):
    """A trained teacher whose answers are shifted by one class: confidently wrong on every sample."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).roll(1, dims=1)


@pytest.mark.slow
def test_a_chance_level_teacher_is_refused_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "const_teacher.py").write_text(textwrap.dedent(CONSTANT))
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(main, ["distill", "--target", "nrf52840-dk", "--task", "digits", "--teacher",
                                  "const_teacher:constant", "--out", str(tmp_path / "x"), "--limit", "400",
                                  "--epochs", "1", "--no-int8-check"])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "chance level" in line and "--allow-weak-teacher" in line and "--teacher-weights" in line
    assert not (tmp_path / "x" / "student.pt").exists()
    d = distill("nrf52840-dk", "digits", "const_teacher:constant", tmp_path / "y", epochs=1, limit=400,
                families=["dscnn"], verify_int8=False, progress=False, allow_weak_teacher=True)
    check = d["teacher"]["check"]
    assert check["at_chance"] is True and check["allowed_weak"] is True
    assert check["val_accuracy"] <= check["chance_threshold"] and check["chance"] == pytest.approx(0.1, abs=0.05)
    # Not better than a quick no-teacher run either: said in the record.
    assert "not better than a quick no-teacher run" in check["warning"]


@pytest.mark.slow
def test_a_worse_distilled_student_is_not_shipped_silently(tmp_path: Path, teacher_file: Path, digits,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    good = load_teacher(str(teacher_file), digits.spec).module
    torch.save(good.state_dict(), tmp_path / "w.pt")
    from edgekd.distill import teachers as teachers_module

    real = teachers_module._load_factory

    def rolled(ref: str, weights: str | None) -> nn.Module:
        if ref != "rolled:teacher":
            return real(ref, weights)
        inner = teachers_module.build_teacher("resnet-teacher", {"width": 32, "blocks": 1, "stages": 2}, digits.spec)
        inner.load_state_dict(torch.load(weights, weights_only=True))
        return _Rolled(inner)

    monkeypatch.setattr(teachers_module, "_load_factory", rolled)
    d = distill("nrf52840-dk", "digits", "rolled:teacher", tmp_path / "run", epochs=20, limit=400, baseline=True,
                families=["dscnn"], teacher_weights=str(tmp_path / "w.pt"), loss_args={"alpha": 1.0},
                allow_weak_teacher=True, progress=False)
    shipped = d["shipped"]
    assert shipped["shipped"] == "no-teacher" and "teacher did not help" in shipped["reason"]
    assert shipped["no_teacher"]["val_accuracy"] > shipped["distilled"]["val_accuracy"]
    for who in ("distilled", "no_teacher"):
        assert 0 <= shipped[who]["test_float"] <= 1 and 0 <= shipped[who]["test_int8"] <= 1
    # What was written is the twin: its float accuracy, and the saved student reproduces it.
    assert d["student"]["accuracy_float"] == shipped["no_teacher"]["test_float"]
    model, _ = load_student(tmp_path / "run")
    from edgekd.distill.train import accuracy, predict
    from edgekd.students import model_input_shape

    split = load_task("digits", limit=400)
    assert accuracy(predict(model, split.x_test, model_input_shape(model)), split.y_test) == \
        pytest.approx(shipped["no_teacher"]["test_float"])
    assert "no-teacher twin" in (d["teacher"]["check"]["warning"] or "")
    from edgekd.distill.summary import distill_text

    assert "shipped the no-teacher student" in distill_text(d, "run")


def test_choose_ships_the_better_student_on_validation() -> None:
    from edgekd.distill.guard import choose

    a = {"loss": "kd", "val_accuracy": 0.9, "test_float": 0.8, "test_int8": 0.79}
    b = {"loss": "ce", "val_accuracy": 0.85, "test_float": 0.9, "test_int8": 0.9}
    assert choose(a, b)["shipped"] == "distilled"  # validation decides, never the test set
    assert choose(b | {"loss": "kd"}, a | {"loss": "ce"})["shipped"] == "no-teacher"
    assert choose(a, a | {"loss": "ce"})["shipped"] == "distilled"  # a tie keeps the distilled student


def test_unlabelled_rows_get_the_soft_loss_only() -> None:
    loss = build_loss("kd", temperature=2.0, alpha=0.5)
    torch.manual_seed(0)
    s, t = torch.randn(6, 10), torch.randn(6, 10)
    y = torch.tensor([1, 2, 3, -1, -1, -1])
    total, parts = loss.mixed(s, t, y)
    labelled, _ = loss(s[:3], t[:3], y[:3])
    soft = loss.soft(s[3:], t[3:])
    assert torch.allclose(total, 0.5 * labelled + 0.5 * soft)
    assert parts["soft_unlabelled"] == pytest.approx(0.5 * float(soft))
    same, _ = loss.mixed(s[:3], t[:3], y[:3])  # a fully labelled batch: the loss unchanged
    assert torch.allclose(same, labelled)
    with pytest.raises(EdgekdError, match="need a teacher"):
        build_loss("ce").mixed(s, None, y)


@pytest.mark.slow
def test_labels_and_unlabelled_are_used_and_counted(tmp_path: Path, teacher_file: Path) -> None:
    extra = np.random.default_rng(0).integers(0, 17, size=(50, 8, 8)).astype(np.float32)  # (N, H, W) images
    np.savez(tmp_path / "u.npz", x=extra)
    d = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path / "run", epochs=2, limit=400, labels=100,
                unlabelled=str(tmp_path / "u.npz"), families=["dscnn"], verify_int8=False, progress=False)
    unl = d["unlabelled"]
    assert d["data"]["train"] == 100 and unl["labels_kept"] == 100
    assert unl["samples"] == unl["used"] == d["training"]["unlabelled_samples"] == (d["data"]["unlabelled"])
    assert unl["samples"] > 50 and any("u.npz: 50 samples" in s for s in unl["sources"])
    assert d["data"]["val"] == 12  # ceil(100 / 9): validation shrinks with the labels
    # The loss saw them: the soft term on unlabelled rows is logged every epoch.
    assert all(row["loss_soft_unlabelled"] > 0 for row in d["training"]["history"])
    # Teacher outputs for them are cached like the rest: a second seed hits every entry.
    again = distill("nrf52840-dk", "digits", str(teacher_file), tmp_path / "run2", epochs=2, limit=400, labels=100,
                    unlabelled=str(tmp_path / "u.npz"), seed=1, families=["dscnn"], verify_int8=False,
                    progress=False)
    assert again["teacher_cache"]["hits"] == 2 and again["teacher_cache"]["misses"] == 0


def test_twin_gets_as_many_steps_as_the_distilled_student(digits) -> None:
    from edgekd.data.unlabelled import keep_labels
    from edgekd.distill import twin_epochs

    few = keep_labels(digits, 64)
    cfg = TrainConfig(epochs=3, batch_size=32)
    # (64 + rest) / 32 steps an epoch for distillation, 2 for the twin.
    union = 64 + len(few.x_unlabelled)
    assert twin_epochs(few, cfg) == round(3 * -(-union // 32) / 2)
    assert twin_epochs(digits, cfg) == 3 and twin_epochs(few, cfg, distilled_on_unlabelled=False) == 3
