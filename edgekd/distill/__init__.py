"""Hardware-aware distillation: train the student the planner picked for a target from a teacher.

``train_teacher`` trains and saves a built-in teacher for a task; ``distill`` plans the student for the target,
trains it from the teacher (cached teacher outputs, or online for feature distillation), optionally fine-tunes
it with quantization-aware training, re-checks it against the budgets and writes ``student.pt`` and
``distill.json``. Both run unchanged under ``torchrun``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgekd.data import Splits, load_task
from edgekd.data.unlabelled import prepare as prepare_unlabelled
from edgekd.data.unlabelled import training_union
from edgekd.distill import augment, guard
from edgekd.distill.cache import TeacherCache, check_cache_root
from edgekd.distill.losses import LOSSES, build_loss
from edgekd.distill.mix import DEFAULT_MIX, build_mix
from edgekd.distill.online import OnlineTeacher, feature_channels
from edgekd.distill.teachers import (
    Teacher,
    build_teacher,
    load_teacher,
    load_teachers,
    recipe,
    save_teacher,
)
from edgekd.distill.train import TeacherFn, TrainConfig, accuracy, barrier, fit, is_main, predict, world
from edgekd.errors import EdgekdError
from edgekd.io import check_writable, check_writable_file, write_json
from edgekd.logs import log
from edgekd.students import StudentConfig, build_student, model_input_shape
from edgekd.students.store import (  # noqa: F401  (re-exported: the names edgekd.distill always offered)
    DATA_SEED,
    DISTILL_JSON,
    STUDENT_FILE,
    STUDENT_FORMAT,
    load_student,
    save_student,
)

if TYPE_CHECKING:
    from edgekd.planner import Candidate
    from edgekd.targets import Target


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("edgekd", "torch", "executorch", "litert-torch", "ai-edge-litert", "tflite-micro", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ------------------------------------------------------------------ teachers

def train_teacher(task: str, out: str | Path, epochs: int | None = None, seed: int = 0,
                  data_dir: str | None = None, limit: int | None = None, progress: bool = True,
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the built-in teacher for ``task`` and save it to ``out`` (+ ``out``.json with its figures);
    ``params`` overrides the recipe's architecture parameters (e.g. a narrower teacher for a quick benchmark)."""
    out = check_writable_file(out, "--out")  # before minutes of training, not at the save
    splits = load_task(task, data_dir, seed=DATA_SEED, limit=limit)
    spec = splits.spec
    r = recipe(spec.name)
    if params:
        r = replace(r, params=r.params | params)
    cfg = TrainConfig(epochs=epochs or r.epochs, batch_size=r.batch_size, lr=r.lr, seed=seed, augment=r.augment)
    torch.manual_seed(seed)
    model = build_teacher(r.arch, r.params, spec)
    policy = augment.Policy.for_task(spec.name, spec.kind, cfg.augment)
    result = fit(model, splits.x_train, splits.y_train, splits.x_val, splits.y_val, tuple(spec.input_shape),
                 build_loss("ce", label_smoothing=r.label_smoothing), cfg, policy, label=f"teacher {spec.name}",
                 progress=progress)
    test_acc = accuracy(predict(model, splits.x_test, tuple(spec.input_shape)), splits.y_test)
    record = {"task": spec.name, "arch": r.arch, "params": r.params,
              "param_count": sum(p.numel() for p in model.parameters()), "test_accuracy": test_acc,
              "val_accuracy": result.shipped_val_accuracy, "epoch_selection": result.selection,
              "train_seconds": result.seconds, "train": cfg.to_dict(),
              "label_smoothing": r.label_smoothing,
              "augmentation": asdict(policy), "history": result.history, "data": splits.summary()["sizes"]}
    if is_main():
        save_teacher(model, r.arch, r.params, spec, out,
                     {k: record[k] for k in ("test_accuracy", "val_accuracy", "train_seconds", "param_count")})
        write_json(out.with_suffix(out.suffix + ".json"), record)
    barrier()
    log.debug("teacher %s: test accuracy %.4f after %d epochs (%.0f s) -> %s", spec.name, test_acc,
             result.epochs_run, result.seconds, out)
    return record | {"path": str(out)}


def train_student(config: StudentConfig, splits: Splits, teacher: Teacher | None, loss: str,
                  cfg: TrainConfig, out_dir: Path | None = None, resume: bool = False,
                  loss_args: dict[str, Any] | None = None, cache: TeacherCache | None = None,
                  label: str = "student", progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """Train one student config from ``teacher`` with ``loss`` (``ce`` needs no teacher)."""
    spec = splits.spec
    loss_fn = build_loss(loss, **(loss_args or {}))
    if loss_fn.needs_teacher and teacher is None:
        raise EdgekdError(f"loss {loss!r} needs a teacher (--teacher)")
    torch.manual_seed(cfg.seed)
    model = build_student(config, spec.input_shape, spec.num_classes)
    shape = model_input_shape(model)
    policy = augment.Policy.for_task(spec.name, spec.kind, cfg.augment)
    teacher_fn: TeacherFn | None = None
    feature_layer = None
    extra: list[nn.Parameter] = []
    online: OnlineTeacher | None = None
    if loss_fn.needs_teacher:
        assert teacher is not None
        if loss_fn.needs_features:
            if not teacher.feature_layer:
                raise EdgekdError("loss 'feature' needs a teacher layer: built-in teachers have one, for your own "
                                  "teacher pass --teacher-layer NAME")
            feature_layer = model.feature_layer
            loss_fn.init_projection(feature_channels(model, feature_layer, shape),
                                    feature_channels(teacher.module, teacher.feature_layer, spec.input_shape))
            extra = list(loss_fn.parameters())
            teacher_fn = online = OnlineTeacher(teacher)
        elif cache is not None:
            teacher_fn = cache
        else:  # no cache given (a Python caller): run the teacher on each batch rather than train without it
            teacher_fn = online = OnlineTeacher(teacher)
    x_train, y_train = training_union(splits) if teacher_fn is not None else (splits.x_train, splits.y_train)
    try:
        result = fit(model, x_train, y_train, splits.x_val, splits.y_val, shape, loss_fn, cfg,
                     policy, out_dir, resume, teacher_fn, feature_layer, label, progress, extra)
    finally:
        if online is not None:
            online.close()
    logits = predict(model, splits.x_test, shape)
    return model, {"loss": loss, "loss_params": loss_fn.hparams(), "test_accuracy": accuracy(logits, splits.y_test),
                   "labelled_samples": int(len(splits.y_train)),
                   "unlabelled_samples": int(len(x_train) - len(splits.y_train)), **result.to_dict()}


def _ship_evidence(model: nn.Module, twin: nn.Module, splits: Splits, teacher: Teacher, teacher_val: float,
                   x_ship: Any) -> dict[str, Any]:
    """What :func:`guard.choose` weighs: the paired comparison of both students on validation, and their
    agreement with the teacher on the held-out unlabelled samples ``x_ship`` (None: there are none)."""
    shape = model_input_shape(model)
    d_pred = predict(model, splits.x_val, shape).argmax(1)
    t_pred = predict(twin, splits.x_val, shape).argmax(1)
    evidence: dict[str, Any] = {"validation": guard.paired(d_pred == splits.y_val, t_pred == splits.y_val),
                                "teacher_val": teacher_val, "agreement": None}
    if x_ship is not None:
        ref = teacher.predict(x_ship).argmax(1)
        d_agree, t_agree = predict(model, x_ship, shape).argmax(1) == ref, predict(twin, x_ship, shape).argmax(1) == ref
        evidence["agreement"] = {"samples": int(len(x_ship)), "distilled": float(d_agree.mean()),
                                 "no_teacher": float(t_agree.mean()), "paired": guard.paired(d_agree, t_agree)}
    return evidence


def twin_epochs(splits: Splits, cfg: TrainConfig, distilled_on_unlabelled: bool = True) -> int:
    """Epochs of the no-teacher twin: as many optimizer steps as the distilled student took. With unlabelled
    samples an epoch of distillation covers them too; the twin, trained on the labelled samples alone, would
    otherwise get a fraction of the steps (8 instead of 422 an epoch with 1,000 of Fashion-MNIST's labels) and
    lose for lack of training, not of a teacher."""
    labelled = len(splits.y_train)
    unlabelled = 0 if splits.x_unlabelled is None or not distilled_on_unlabelled else len(splits.x_unlabelled)
    steps = math.ceil((labelled + unlabelled) / cfg.batch_size) * cfg.epochs
    return max(cfg.epochs, round(steps / math.ceil(labelled / cfg.batch_size)))


def distill(target_name: str | Target, task: str, teacher_ref: str | None, out_dir: str | Path, loss: str = "kd",
            epochs: int = 20, qat: bool = False, qat_epochs: int = 3, search: int = 0, resume: bool = False,
            baseline: bool = False, seed: int = 0, aug_seed: int = 0, data_dir: str | None = None,
            limit: int | None = None, teacher_weights: str | None = None, teacher_layer: str | None = None,
            loss_args: dict[str, Any] | None = None, budgets: dict[str, str | None] | None = None,
            families: list[str] | None = None, batch_size: int = 128, lr: float = 3e-3, patience: int = 0,
            verify_int8: bool = True, progress: bool = True, planned: list[Candidate] | None = None,
            labels: int | None = None, unlabelled: str | Path | list[str | Path] | None = None,
            allow_weak_teacher: bool = False, quick_check: bool = True, mix: str = DEFAULT_MIX,
            views: int = 0) -> dict[str, Any]:
    """Plan, train, check and save the student for ``target_name`` (a name, a profile path or a loaded Target)
    on ``task``; returns distill.json's content. ``planned``: the fitting candidates, best first, of a plan made
    earlier (``edgekd build``'s plan.json), used instead of planning again.

    ``teacher_ref``: one reference or a list (an ensemble: their logits are averaged). ``labels``: keep only that
    many labels of the training split, the rest become unlabelled; ``unlabelled``: samples without labels (see
    :mod:`edgekd.data.unlabelled`), learnt from the teacher's soft targets. With ``baseline`` the better of the
    distilled student and its no-teacher twin on validation is shipped (see :mod:`edgekd.distill.guard`);
    ``quick_check=False`` skips the quick no-teacher run a teacher is compared with otherwise (benchmarks that
    train the no-teacher students themselves). ``mix``: function matching with the teacher (``mixup``, ``cutmix``
    or ``none``, :mod:`edgekd.distill.mix`). ``views``: cycle that many fixed augmentation draws when distilling
    (0: a fresh draw each epoch), so the teacher's outputs are computed that many times whatever ``epochs``."""
    from edgekd.planner import evaluate, explain_no_fit, plan
    from edgekd.targets import Target, load_target

    started = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(out_dir)
    if loss not in LOSSES:
        raise EdgekdError(f"unknown loss {loss!r}; known: {', '.join(sorted(LOSSES))}")
    mixer = build_mix(mix)  # an unknown name is one line now, not after the teacher
    augment.check_views(views)
    check_writable(out, "--out")  # before the teacher and the training, not at the save
    check_cache_root()  # EDGEKD_CACHE pointing at a file: one line now, not a traceback in the planner
    target = target_name if isinstance(target_name, Target) else load_target(target_name)
    target = target.with_budgets(**(budgets or {}))
    splits = prepare_unlabelled(load_task(task, data_dir, seed=DATA_SEED, limit=limit), labels, unlabelled)
    x_ship = None  # unlabelled samples no student trains on: evidence for the ship decision (guard.choose)
    if baseline and LOSSES[loss].needs_teacher:
        splits, x_ship = guard.hold_out_unlabelled(splits)
    spec = splits.spec
    refs = [teacher_ref] if isinstance(teacher_ref, str) else list(teacher_ref or [])
    if teacher_weights and not any(":" in r and not Path(r).exists() for r in refs):
        raise EdgekdError("--teacher-weights loads a state dict into a --teacher package.module:factory (or "
                          "path/to/file.py:factory); give that factory too")
    if splits.x_unlabelled is not None and not LOSSES[loss].needs_teacher and unlabelled is not None:
        log.warning("--unlabelled: loss %r learns from labels only, the %d unlabelled samples are not used; give "
                    "--teacher and a distillation loss (kd)", loss, len(splits.x_unlabelled))
    fitting = planned
    if fitting is None:
        t = time.perf_counter()
        the_plan = plan(target, spec, families)
        timings["plan"] = round(time.perf_counter() - t, 2)
        if not the_plan.fits:
            raise EdgekdError(explain_no_fit(the_plan))
        fitting = [c for c in the_plan.candidates if c.fits]
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
    barrier()

    teacher = None
    teacher_record: dict[str, Any] = {"path": None}
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, aug_seed=aug_seed, patience=patience,
                      mix=mix if LOSSES[loss].needs_teacher else "none",
                      views=views if LOSSES[loss].needs_teacher else 0)
    if mixer is not None and not LOSSES[loss].needs_teacher:
        log.warning("--mix %s: loss %r has no teacher to match on mixed images; training without mixing", mix, loss)
    if LOSSES[loss].needs_teacher or refs:
        if not refs:
            raise EdgekdError(f"loss {loss!r} needs --teacher (train one: edgekd teacher --task {spec.name} "
                              "--out teacher.pt)")
        t = time.perf_counter()
        teacher = (load_teacher(refs[0], spec, teacher_weights, teacher_layer, splits.x_val) if len(refs) == 1
                   else load_teachers(refs, spec, teacher_weights, teacher_layer, splits.x_val))
        teacher_val = accuracy(teacher.predict(splits.x_val), splits.y_val)
        teacher_record = teacher.describe() | {
            "test_accuracy": accuracy(teacher.predict(splits.x_test), splits.y_test),
            "check": guard.check_teacher(teacher_val, splits, " ".join(refs), allow_weak_teacher),
            "inputs": {"shape": list(spec.input_shape), "layout": "channels-first (foreign teachers: as their "
                       "model declares)", "normalization": {k: splits.normalization[k] for k in ("mean", "std",
                                                                                                  "formula")}}}
        if not baseline and quick_check:  # with --baseline the full twin is the bar, compared after training
            quick = guard.quick_no_teacher(fitting[0].student, splits, cfg, progress)
            teacher_record["check"]["quick_no_teacher"] = quick
            teacher_record["check"]["warning"] = guard.compare_teacher(
                teacher_val, quick["val_accuracy"], f"a quick no-teacher run of the student ({quick['epochs']} "
                f"epochs on {quick['train_samples']} samples)")
        timings["teacher_eval"] = round(time.perf_counter() - t, 2)

    policy = augment.Policy.for_task(spec.name, spec.kind, cfg.augment)
    cache = None
    cache_record: dict[str, Any] = {"used": False}
    if teacher is not None and not LOSSES[loss].needs_features:
        x_union, _ = training_union(splits)
        cache = TeacherCache(teacher, x_union, None, policy, aug_seed, mix=cfg.mix)
        t = time.perf_counter()
        draws = augment.views_used(epochs, cfg.views, policy, cfg.mix != "none")
        if is_main():
            for v in draws:
                cache.ensure(v)
        barrier()
        timings["teacher_outputs"] = round(time.perf_counter() - t, 2)
        cache_record = {"used": True, "dir": str(cache.dir), **asdict(cache.stats), "draws": len(draws),
                        "mode": "cached per augmentation draw (aug_seed, draw); " + (
                            f"{len(draws)} draw(s) cycled over {epochs} epochs" if len(draws) < epochs
                            else "a fresh draw each epoch")}
    elif teacher is not None:
        cache_record = {"used": False, "mode": "online: feature maps are too large to cache, the teacher runs "
                                               "on every augmented batch"}

    # Search: short runs of the planner's top fitting candidates, keep the best on validation.
    chosen = fitting[0]
    search_rows = []
    if search > 1:
        t = time.perf_counter()
        short = TrainConfig(**(cfg.to_dict() | {"epochs": max(1, epochs // 4), "patience": 0}))
        from edgekd.search_exec import search_score

        for cand in fitting[:search]:
            short_model, rec = train_student(cand.student, splits, teacher, loss, short, None, False, loss_args,
                                             cache, label=f"search {cand.label()}", progress=progress)
            search_rows.append({"family": cand.family, "config": cand.config, "params": cand.params,
                                "macs": cand.macs, "predicted": cand.predicted, "epochs": short.epochs,
                                **search_score(short_model, splits, rec)})
        best_row = max(search_rows, key=lambda r: (r["val_accuracy"], r["macs"]))
        chosen = next(c for c in fitting if c.family == best_row["family"] and c.config == best_row["config"])
        timings["search"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    model, record = train_student(chosen.student, splits, teacher, loss, cfg, out, resume, loss_args, cache,
                                  label=f"{loss} {chosen.label()}", progress=progress)
    timings["train"] = round(time.perf_counter() - t, 2)

    baseline_record = None
    choice = None
    ship_loss, ship_teacher = loss, teacher
    if baseline:
        t = time.perf_counter()
        twin_cfg = TrainConfig(**(cfg.to_dict() | {"epochs": twin_epochs(splits, cfg, teacher is not None)}))
        twin, baseline_record = train_student(chosen.student, splits, None, "ce", twin_cfg, None, False, None, None,
                                              label=f"no-teacher {chosen.label()}", progress=progress)
        timings["baseline"] = round(time.perf_counter() - t, 2)
        if teacher is not None:
            teacher_record["check"]["warning"] = guard.compare_teacher(
                teacher_record["check"]["val_accuracy"], baseline_record["shipped_val_accuracy"],
                "the student's no-teacher twin")
        if teacher is not None:  # the int8 accuracy of both, for the record of what was shipped
            from edgekd.distill.check import int8_accuracy

            t = time.perf_counter()
            record["accuracy_int8"] = int8_accuracy(model, splits, out / "distilled_int8.tflite")
            baseline_record["accuracy_int8"] = int8_accuracy(twin, splits, out / "no_teacher_int8.tflite")
            timings["int8_both"] = round(time.perf_counter() - t, 2)
        if LOSSES[loss].needs_teacher:
            choice = guard.choose(
                {"loss": loss, "val_accuracy": record["shipped_val_accuracy"], "test_float": record["test_accuracy"],
                 "test_int8": record.get("accuracy_int8")},
                {"loss": "ce", "val_accuracy": baseline_record["shipped_val_accuracy"],
                 "test_float": baseline_record["test_accuracy"], "test_int8": baseline_record.get("accuracy_int8")},
                _ship_evidence(model, twin, splits, teacher, teacher_record["check"]["val_accuracy"], x_ship))
            if choice["shipped"] == "no-teacher":
                model, ship_loss, ship_teacher = twin, "ce", None
    float_acc = choice["no_teacher"]["test_float"] if choice and choice["shipped"] == "no-teacher" \
        else record["test_accuracy"]

    qat_record = None
    qat_state = None
    if qat:
        from edgekd.distill.qat import qat_finetune

        t = time.perf_counter()
        qat_state, qat_record = qat_finetune(model, splits, ship_teacher, ship_loss, cfg, qat_epochs,
                                             loss_args if ship_teacher is not None else None,
                                             cache if ship_teacher is not None else None, progress=progress)
        timings["qat"] = round(time.perf_counter() - t, 2)

    # Budget re-check: the cost model on the trained student, and the real int8 file on TFLite Micro.
    check = evaluate(chosen.student, target, spec)
    measured = None
    if verify_int8 and is_main():
        from edgekd.distill.check import measure_int8

        t = time.perf_counter()
        measured = measure_int8(model, splits, out / "student_int8.tflite", target, qat_state)
        timings["int8_check"] = round(time.perf_counter() - t, 2)
    fits = check.fits and (measured is None or measured["fits"])

    result = {
        "target": target.name,
        "task": spec.name,
        "data_source": {"task": task, "data_dir": data_dir, "limit": limit},
        "teacher": teacher_record,
        "student": {"family": chosen.family, "config": chosen.config, "params": chosen.params,
                    "macs": chosen.macs, "accuracy_float": float_acc,
                    "accuracy_int8": measured["accuracy_int8"] if measured else None,
                    "accuracy_no_teacher": baseline_record["test_accuracy"] if baseline_record else None,
                    "qat": qat},
        "training": record,
        "qat": qat_record,
        "no_teacher": baseline_record,
        "budgets": target.budgets.to_dict(),
        "predicted": check.predicted,
        "measured": measured,
        "fits": fits,
        "teacher_cache": cache_record,
        "epoch_selection": {"student": record["selection"],
                            "no_teacher": baseline_record["selection"] if baseline_record else None},
        "shipped": choice or {"shipped": "distilled" if teacher is not None else "no-teacher",
                              "reason": "no no-teacher twin was trained (--baseline compares and ships the better)"
                              if teacher is not None else "trained without a teacher (loss ce)"},
        "unlabelled": splits.unlabelled_summary() | {
            "used": record["unlabelled_samples"], "held_out_for_ship_decision": 0 if x_ship is None else len(x_ship)},
        "candidates": search_rows or [c.to_dict() for c in fitting[:5]],
        "search": search,
        "train_config": cfg.to_dict(),
        "augmentation": asdict(policy),
        "function_matching": (build_mix(cfg.mix).describe() | {"applies_to": "the distilled student, not its twin"}
                              if cfg.mix != "none" else {"name": "none"}),
        "data": splits.summary()["sizes"] | {"unlabelled": record["unlabelled_samples"]},
        "timings_s": timings | {"total": round(time.perf_counter() - started, 2)},
        "world_size": world()[1],
        "versions": versions(),
    }
    if cache is not None:
        result["teacher_cache"].update(asdict(cache.stats))
    if is_main():
        save_student(model, chosen.student, splits, out / STUDENT_FILE, qat_state)
        write_json(out / DISTILL_JSON, result)
    barrier()
    return result

