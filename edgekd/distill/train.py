"""The training loop shared by teachers and students: deterministic, resumable, multi-process.

* Determinism: every random choice is a function of (seed, epoch): the shuffle, dropout (global torch RNG
  re-seeded each epoch) and the augmentation draw (of ``aug_seed``). Resuming from the checkpoint written after
  epoch k replays epochs k+1... exactly, so a resumed run ends bit-identical to an uninterrupted one.
* A checkpoint (model, optimizer, schedule, best state, history) is written atomically after every epoch
  (``edgekd.io``: a full disk leaves the previous checkpoint and no temporary file); ``--resume`` reads it with
  ``weights_only=True`` and refuses a truncated, foreign or unsafe one in one line.
* Learning rate: linear warm-up over the first epoch, then cosine decay to zero (per step).
* Early stopping on validation accuracy (``patience`` epochs without improvement); the best state is kept.
* The epoch shipped (``select``, :func:`selection`): the best on validation when validation is large enough to
  tell epochs apart, else the final one (a best-of-E pick on a few hundred samples picks noise).
* Under ``torchrun --nproc-per-node N``: DistributedDataParallel (gloo on CPU, nccl on CUDA). Each global batch
  is split across ranks, so N processes see the same samples per step as one process; rank 0 writes files.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from edgekd.distill import augment
from edgekd.distill import mix as mixing
from edgekd.distill.losses import DistillLoss
from edgekd.distill.teachers import first_line, load_weights, weights_only_load
from edgekd.errors import EdgekdError
from edgekd.io import atomic_torch_save
from edgekd.logs import log
from edgekd.students import to_model_input

CHECKPOINT = "checkpoint.pt"
#: With ``select="auto"``, fewer validation samples than this ship the final epoch, not the best-validation one.
#: At 2,000 samples the standard error of an accuracy near 90% is 0.67 pp; at the 556 of ``--labels 5000`` it
#: is 1.3 pp, more than late epochs differ by, and picking the best of 15 such estimates cost up to 1.6 pp of
#: test accuracy on Fashion-MNIST (docs/distillation.md, "Which epoch is shipped").
MIN_SELECT_SAMPLES = 2000
SELECTIONS = ("auto", "best", "final")


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0
    aug_seed: int = 0
    augment: bool = True
    patience: int = 0  # 0: no early stopping
    eval_batch_size: int = 1024
    mix: str = "none"  # function matching with a teacher: "mixup", "cutmix" (edgekd.distill.mix) or "none"
    views: int = 0  # with a teacher: cycle this many fixed augmentation draws (0: a fresh draw each epoch)
    select: str = "auto"  # the epoch shipped: "best" validation, "final", or "auto" (selection())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int | None = None
    selection: dict[str, Any] = field(default_factory=dict)  # the epoch the model holds, the rule and why
    shipped_val_accuracy: float = float("nan")  # validation accuracy of that epoch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ processes and devices

def world() -> tuple[int, int]:
    """(rank, world size); initialises the process group on first use under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if size > 1 else (0, 1)


def device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def is_main() -> bool:
    return world()[0] == 0


# ------------------------------------------------------------------ evaluation

def set_training(model: nn.Module, flag: bool) -> None:
    """model.train(flag), also for exported (QAT-prepared) graphs, which need torchao's mode switch."""
    try:
        model.train(flag)
    except NotImplementedError:
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        (move_exported_model_to_train if flag else move_exported_model_to_eval)(model)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, input_shape: tuple[int, ...], batch: int = 1024) -> np.ndarray:
    """Logits of ``model`` on task inputs ``x`` (mapped to the model's input shape), as float32 numpy."""
    was_training = model.training
    set_training(model, False)
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch):
        xb = to_model_input(x[i:i + batch], input_shape).to(dev)
        out.append(model(xb).float().cpu())
    set_training(model, was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


# ------------------------------------------------------------------ which epoch is shipped

def selection(rule: str, val_samples: int) -> dict[str, Any]:
    """The epoch ``fit`` leaves the model holding: ``{"rule": "best validation" | "final epoch", "why": ...}``.

    ``auto`` ships the best-validation epoch when validation has at least MIN_SELECT_SAMPLES samples, else the
    final one. Why: the best of E validation accuracies is an upward-biased, noisy pick when their standard error
    is larger than the differences between epochs, while under the cosine schedule (to zero) the final epoch is
    where training converges. The rule depends on the validation size only, so a distilled student and its
    no-teacher twin (same labels, same validation) always get the same rule.
    """
    if rule not in SELECTIONS:
        raise EdgekdError(f"epoch selection {rule!r} is not one of {', '.join(SELECTIONS)}")
    if rule == "best":
        return {"rule": "best validation", "why": "asked for (select=best)"}
    if rule == "final":
        return {"rule": "final epoch", "why": "asked for (select=final)"}
    if val_samples >= MIN_SELECT_SAMPLES:
        return {"rule": "best validation", "why": f"{val_samples} validation samples (>= {MIN_SELECT_SAMPLES}) "
                "tell epochs apart"}
    return {"rule": "final epoch", "why": f"only {val_samples} validation samples (< {MIN_SELECT_SAMPLES}): their "
            "accuracy varies more than epochs differ, so the best-validation epoch would be picked on noise"}


# ------------------------------------------------------------------ the loop

TeacherFn = Callable[[torch.Tensor, int, torch.Tensor], tuple[torch.Tensor | None, torch.Tensor | None]]


def fit(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        input_shape: tuple[int, ...], loss_fn: DistillLoss, cfg: TrainConfig, policy: augment.Policy,
        out_dir: Path | None = None, resume: bool = False, teacher: TeacherFn | None = None,
        feature_layer: str | None = None, label: str = "train", progress: bool = True,
        extra_params: list[nn.Parameter] | None = None, stop_after: int | None = None) -> TrainResult:
    """Train ``model`` in place and leave it holding the epoch :func:`selection` picks (``cfg.select``): its
    best-validation state, or with a small validation split its final state.

    ``stop_after`` ends this run after that many epochs (a time-boxed or preempted job); the checkpoint lets a
    later ``resume=True`` run finish the schedule as if it had never stopped.

    ``teacher(x_aug, epoch, idx)`` returns (teacher logits, teacher feature) for the augmented batch whose rows
    are training samples ``idx``; ``feature_layer`` names the student module whose output feeds a feature loss.
    With a teacher, ``cfg.mix`` mixes a share of each batch (function matching, :mod:`edgekd.distill.mix`): the
    mixed rows are trained on the teacher's output for the mixed image alone (label -1). With a teacher, epoch e
    uses augmentation draw :func:`edgekd.distill.augment.view` (``cfg.views``), which is what ``teacher`` gets as
    its epoch: a cached teacher then computes its outputs once per draw, not once per epoch. Without a teacher
    every epoch draws anew (the no-teacher twin is unchanged by ``views``).
    """
    rank, size = world()
    rule = selection(cfg.select, len(y_val))
    mixer = mixing.build_mix(cfg.mix) if teacher is not None else None
    dev = device()
    model.to(dev)
    loss_fn.to(dev)
    with _capture_output(model, feature_layer) as captured:
        net: nn.Module = nn.parallel.DistributedDataParallel(model) if size > 1 else model
        params = list(model.parameters()) + list(extra_params or [])
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        n = len(x_train)
        steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        total_steps = steps_per_epoch * cfg.epochs
        warmup = min(steps_per_epoch, total_steps // 4 or 1)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        history: list[dict[str, float]] = []
        best = {"epoch": -1, "val": -1.0, "state": None}
        start_epoch, resumed_from = 0, None
        ckpt_path = out_dir / CHECKPOINT if out_dir else None
        if resume and ckpt_path and ckpt_path.is_file():
            state = _load_checkpoint(ckpt_path, cfg)
            load_weights(model, state["model"], f"{ckpt_path}: the checkpoint's weights do not fit this student",
                         "rerun without --resume")
            try:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                if state.get("loss"):
                    loss_fn.load_state_dict(state["loss"])
                history, best = list(state["history"]), dict(state["best"])
                start_epoch = resumed_from = int(state["epoch"]) + 1
            except Exception as exc:  # a damaged checkpoint fails in many ways
                raise EdgekdError(f"{ckpt_path}: damaged checkpoint ({first_line(exc)}); rerun without "
                                  "--resume") from None
            log.info("%s: resumed after epoch %d", label, start_epoch)

        x_t = torch.from_numpy(np.ascontiguousarray(x_train))
        y_t = torch.from_numpy(np.ascontiguousarray(y_train)).long()
        started = time.perf_counter()
        stopped_early = False
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[status]}"), console=Console(stderr=True), transient=True,
                      disable=not (progress and rank == 0)) as bar:
            job = bar.add_task(label, total=cfg.epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch,
                               status="")
            for epoch in range(start_epoch, cfg.epochs):
                torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout and anything else drawing from torch RNG
                order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
                view = augment.view(epoch, cfg.views, policy, mixer is not None) if teacher is not None else epoch
                draw = augment.draw(policy, n, cfg.aug_seed, view)
                mix_draw = mixer.draw(n, tuple(x_t.shape[1:]), cfg.aug_seed, view) if mixer else None
                set_training(model, True)
                totals: dict[str, float] = {}
                seen = correct = labelled = 0
                for step in range(steps_per_epoch):
                    idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                    local = idx[rank::size]
                    xb = augment.apply(x_t[local], local, draw, policy)
                    yb = y_t[local]
                    if mix_draw is not None:
                        xb, mixed_rows = mixing.apply(mixer, mix_draw, xb, local,
                                                      lambda p, d=draw: augment.apply(x_t[p], p, d, policy))
                        yb = torch.where(mixed_rows, -1, yb)
                    yb = yb.to(dev)
                    t_logits = t_feat = None
                    if teacher is not None:
                        t_logits, t_feat = teacher(xb, view, local)
                    out = net(to_model_input(xb, input_shape).to(dev))
                    feats = {"student_feature": captured["feature"], "teacher_feature": t_feat} if feature_layer else {}
                    loss, parts = loss_fn.mixed(out, None if t_logits is None else t_logits.to(dev), yb, **feats)
                    # Each rank's loss covers its slice; scale so DDP's gradient mean equals the full batch's.
                    (loss * len(local) * size / max(1, len(idx))).backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    for k, v in parts.items():
                        totals[k] = totals.get(k, 0.0) + v * len(local)
                    correct += int((out.argmax(1) == yb).sum())  # unlabelled rows (label -1) never count
                    seen += len(local)
                    labelled += int((yb >= 0).sum())
                    bar.update(job, advance=1, status=f"epoch {epoch + 1}/{cfg.epochs} loss "
                               f"{sum(totals.values()) / max(1, seen):.3f} acc {correct / max(1, labelled):.3f}")
                val_acc = accuracy(predict(model, x_val, input_shape, cfg.eval_batch_size), y_val)
                row = {"epoch": epoch + 1, "train_accuracy": correct / max(1, labelled), "val_accuracy": val_acc,
                       "lr": scheduler.get_last_lr()[0], **{f"loss_{k}": v / max(1, seen) for k, v in totals.items()}}
                history.append(row)
                if val_acc > best["val"]:
                    best = {"epoch": epoch + 1, "val": val_acc,
                            "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
                log.info("%s epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f", label, epoch + 1, cfg.epochs,
                         sum(v for k, v in row.items() if k.startswith("loss_")), row["train_accuracy"], val_acc)
                if ckpt_path and rank == 0:
                    atomic_torch_save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                       "scheduler": scheduler.state_dict(), "loss": loss_fn.state_dict(),
                                       "history": history, "best": best, "config": cfg.to_dict()}, ckpt_path)
                if stop_after is not None and epoch + 1 - start_epoch >= stop_after and epoch + 1 < cfg.epochs:
                    log.info("%s: stopping after %d epoch(s) as asked; --resume continues", label, stop_after)
                    return _result(model, best, history, rule, False, started, resumed_from, load=False)
                if cfg.patience and epoch + 1 - best["epoch"] >= cfg.patience:
                    stopped_early = True
                    log.info("%s: no validation gain for %d epochs, stopping", label, cfg.patience)
                    break
        result = _result(model, best, history, rule, stopped_early, started, resumed_from)
        barrier()
        return result


def _result(model: nn.Module, best: dict[str, Any], history: list[dict[str, float]], rule: dict[str, Any],
            stopped_early: bool, started: float, resumed_from: int | None, load: bool = True) -> TrainResult:
    """The run's record; with ``load`` the model takes the state ``rule`` picks (the best one, or stays final)."""
    final = rule["rule"] == "final epoch" or best["state"] is None
    if load and not final:
        model.load_state_dict(best["state"])
    epoch = history[-1]["epoch"] if final and history else best["epoch"]
    val = history[-1]["val_accuracy"] if final and history else best["val"]
    return TrainResult(best["epoch"], best["val"], len(history), stopped_early, history,
                       round(time.perf_counter() - started, 2), resumed_from,
                       rule | {"epoch": int(epoch), "val_accuracy": float(val)}, float(val))


def _load_checkpoint(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint ``fit`` wrote, loaded with ``weights_only=True``; anything else is one line."""
    state = weights_only_load(path, f"{path}: not a usable checkpoint",
                              "delete it, or rerun without --resume to start over")
    keys = {"epoch", "model", "optimizer", "scheduler", "history", "best", "config"}
    if not isinstance(state, dict) or not keys <= set(state):
        lacking = sorted(keys - set(state)) if isinstance(state, dict) else sorted(keys)
        raise EdgekdError(f"{path}: not an edgekd checkpoint (no {', '.join(lacking)}); delete it, or rerun "
                          "without --resume")
    # Settings added since a checkpoint was written take their defaults (mix "none", views 0: how it trained).
    if not isinstance(state.get("config"), dict) or TrainConfig().to_dict() | state["config"] != cfg.to_dict():
        raise EdgekdError(f"{path}: checkpoint was made with other settings; rerun without --resume "
                          "or with the same flags")
    return state


@contextmanager
def _capture_output(model: nn.Module, layer: str | None) -> Iterator[dict[str, torch.Tensor]]:
    """The output of ``model``'s module ``layer`` on each forward, under key "feature"; the hook is removed on
    exit, since the model outlives the run (search, QAT, resume) and hooks would pile up."""
    captured: dict[str, torch.Tensor] = {}
    if not layer:
        yield captured
        return
    modules = dict(model.named_modules())
    if layer not in modules:
        raise EdgekdError(f"student has no layer {layer!r} for feature distillation")
    handle = modules[layer].register_forward_hook(lambda m, i, o: captured.__setitem__("feature", o))
    try:
        yield captured
    finally:
        handle.remove()
