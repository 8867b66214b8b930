"""The user's own student: ``--student path/to/file.py:factory``, ``package.module:factory`` or a ``.pt2``.

It becomes the ``user`` family with one config, ``{"ref", "kind", "sha256"}``, so the planner costs it, the
training code trains it and ``student.pt`` rebuilds it exactly like a built-in family. The sha256 pins the code
(or program) the weights were trained for: a file edited since then is refused instead of loading weights into
another architecture.

Trust: a ``.pt2`` is read by :mod:`edgekd.distill.pt2` (checked before torch sees it, nothing runs). A factory is
the user's code and importing it runs it, the deliberate exception that ``--teacher module:factory`` also is;
so a ``student.pt`` that names code is rebuilt only in a process that was told to import that code
(``--student REF``, which records it in ``$EDGEKD_STUDENT_CODE`` for child processes and Ray trials, or that
variable set by hand). A ``student.pt`` someone sends you never imports anything on its own.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgekd.distill.teachers import first_line, module_from_file
from edgekd.errors import EdgekdError
from edgekd.students import Family, StudentConfig, register_family

FAMILY = "user"
ALLOW_ENV = "EDGEKD_STUDENT_CODE"  # ";"-separated references whose code may be imported (":" is in each one)


def allowed_refs() -> set[str]:
    return {r.strip() for r in os.environ.get(ALLOW_ENV, "").split(";") if r.strip()}


def allow_code(ref: str) -> None:
    """Record that this process (and its children, Ray trials included) may import ``ref``."""
    os.environ[ALLOW_ENV] = ";".join(sorted(allowed_refs() | {ref}))


def _split(ref: str) -> tuple[str, str]:
    module_ref, _, attr = ref.rpartition(":")
    if not module_ref or not attr.isidentifier():
        raise EdgekdError(f"--student {ref}: expected path/to/file.py:factory, package.module:factory or a .pt2 file")
    return module_ref, attr


def _is_file_ref(module_ref: str) -> bool:
    return module_ref.endswith(".py") or "/" in module_ref or os.sep in module_ref


def _import(ref: str) -> tuple[Any, Path | None]:
    """The factory named by ``ref`` and the file it lives in (for the code hash)."""
    module_ref, attr = _split(ref)
    if _is_file_ref(module_ref):
        file = Path(module_ref)
        module = module_from_file(ref, file, option="--student", reuse=True)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ModuleNotFoundError as exc:
            raise EdgekdError(f"--student {ref}: cannot import {module_ref!r} ({exc}); pass the file instead "
                              f"(--student path/to/{module_ref.rsplit('.', 1)[-1]}.py:{attr}) or add its folder "
                              "to PYTHONPATH") from None
        except (Exception, SystemExit) as exc:  # the user's module ran and failed
            raise EdgekdError(f"--student {ref}: importing {module_ref!r} raised {first_line(exc)}") from None
        file = Path(module.__file__) if getattr(module, "__file__", None) else None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EdgekdError(f"--student {ref}: {module_ref!r} has no function {attr!r} returning a torch.nn.Module")
    return factory, file


def _code_sha(file: Path | None, ref: str) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest() if file else hashlib.sha256(ref.encode()).hexdigest()


class ProgramStudent(nn.Module):
    """A ``.pt2`` student: the exported graph, trainable; train/eval switch its BatchNorm and dropout the way
    torch.export graphs need (``nn.Module.train`` is not supported on them)."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> ProgramStudent:
        from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

        (move_exported_model_to_train if mode else move_exported_model_to_eval)(self.program)
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def _build(params: dict[str, Any], task_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    ref, kind, sha = params.get("ref"), params.get("kind"), params.get("sha256")
    if not isinstance(ref, str) or kind not in ("factory", "pt2") or not isinstance(sha, str):
        raise EdgekdError(f"a user student config needs ref, kind (factory|pt2) and sha256, got {params}")
    if kind == "pt2":
        from edgekd.distill.pt2 import load_pt2

        path = Path(ref)
        if not path.is_file():
            raise EdgekdError(f"--student {ref}: no such file")
        program, found = load_pt2(path)
        if found != sha:
            raise EdgekdError(f"--student {ref}: the file changed since this student was planned/trained "
                              "(sha256 differs); re-run with the original file or plan again")
        model: nn.Module = ProgramStudent(program)
    else:
        if ref not in allowed_refs():
            raise EdgekdError(f"this student is your own code ({ref}) and edgekd imports code only when told to: "
                              f"pass --student {ref}, or set {ALLOW_ENV}={ref}")
        factory, file = _import(ref)
        if _code_sha(file, ref) != sha:
            raise EdgekdError(f"--student {ref}: {file} changed since this student was planned/trained (sha256 "
                              "differs); restore it or plan and train again")
        try:
            model = factory()
        except (Exception, SystemExit) as exc:  # a user factory can fail in any way
            raise EdgekdError(f"--student {ref}: the factory raised {first_line(exc)}") from None
        if not isinstance(model, nn.Module):
            raise EdgekdError(f"--student {ref}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    model.input_shape = tuple(task_shape)  # type: ignore[assignment]
    return model


def student_config(ref: str, task_shape: tuple[int, ...], num_classes: int) -> StudentConfig:
    """``--student REF`` as a ``user`` config pinned by sha256, after checking it builds, runs on a batch of
    the task's inputs and gives ``num_classes`` logits (so a wrong model fails now, not after training)."""
    path = Path(ref)
    if path.suffix == ".pt2":
        if not path.is_file():
            raise EdgekdError(f"--student {ref}: no such file; export one with torch.export.save(torch.export."
                              "export(model, (x,), dynamic_shapes=...), 'student.pt2')")
        params = {"ref": str(path.resolve()), "kind": "pt2", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    else:
        module_ref, attr = _split(ref)
        if _is_file_ref(module_ref):
            module_ref = str(Path(module_ref).resolve())  # trials and later stages may run elsewhere
        ref = f"{module_ref}:{attr}"
        allow_code(ref)
        _, file = _import(ref)
        params = {"ref": ref, "kind": "factory", "sha256": _code_sha(file, ref)}
    config = StudentConfig(FAMILY, params)
    torch.manual_seed(0)
    model = _build(dict(params), tuple(task_shape), num_classes)
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *task_shape))
    except Exception as exc:  # a user model can fail in any way
        hint = " (export the .pt2 with a dynamic batch dimension)" if params["kind"] == "pt2" else ""
        raise EdgekdError(f"--student {ref}: fails on a batch of inputs of shape {tuple(task_shape)}{hint}: "
                          f"{first_line(exc)}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EdgekdError(f"--student {ref}: outputs {got} for a batch of 2, but the task needs (2, {num_classes}) "
                          "logits")
    return config


def named_candidate(ref: str, target: Any, task: str, data_dir: str | None = None) -> Any:
    """``--student REF`` for ``target`` (budgets applied) as a planner ``Candidate``, refused before any training
    the way ``edgekd build`` refuses it: an operator the target lacks is exit 2, a missed budget exit 1."""
    from edgekd.data import get_spec
    from edgekd.planner import check_student

    spec = get_spec(task, data_dir)
    return check_student(student_config(ref, tuple(spec.input_shape), spec.num_classes), target, spec)


def distill_student(student: str | None, target_name: Any, task: str, teacher_ref: Any, out_dir: str | Path,
                    search: int = 0, budgets: dict[str, str | None] | None = None, data_dir: str | None = None,
                    families: list[str] | None = None, **options: Any) -> dict[str, Any]:
    """``edgekd distill [--student REF]``: :func:`edgekd.distill.distill` of the planner's student, or of the
    user's own (costed and checked first, so a student that cannot run on the target never trains)."""
    from edgekd.distill import distill
    from edgekd.targets import Target, load_target

    if student is None:
        return distill(target_name, task, teacher_ref, out_dir, search=search, budgets=budgets, data_dir=data_dir,
                       families=families, **options)
    if search > 1:
        raise EdgekdError(f"--search {search} tries the planner's top candidates; with --student there is one "
                          "student: drop one of them")
    if families:
        raise EdgekdError("--family picks among the planner's families; with --student there is one student: drop "
                          "--family")
    target = target_name if isinstance(target_name, Target) else load_target(target_name)
    target = target.with_budgets(**(budgets or {}))
    cand = named_candidate(student, target, task, data_dir)
    return distill(target, task, teacher_ref, out_dir, data_dir=data_dir, planned=[cand], **options)


register_family(Family(
    name=FAMILY,
    kinds=("image", "timeseries"),
    build=_build,
    grid={},
    plannable=False,
    default=False,
    describe="your own student (--student file.py:factory, package.module:factory or a .pt2)",
))
