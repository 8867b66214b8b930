"""Teachers: the built-in ones edgekd trains per task, and users' own PyTorch models.

A built-in teacher is saved as a plain dict of tensors and primitives (architecture name, parameters, state
dict, task, accuracy), so it loads with ``torch.load(weights_only=True)``: no pickled code runs. User teachers
come as a ``torch.export`` program (``.pt2``) or as ``package.module:factory`` / ``path/to/file.py:factory`` plus
a state dict; all are checked against the task (output shape, class count) before anything is trained from them.
A ``.pt2`` is read by :mod:`edgekd.distill.pt2`, which checks the archive before anything in it loads.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.data import TaskSpec
from edgekd.data.knowledge import TeacherRecipe
from edgekd.errors import EdgekdError
from edgekd.io import atomic_torch_save, sha256_file
from edgekd.logs import log

FORMAT = "edgekd-teacher/1"


class _Block(nn.Module):
    def __init__(self, channels: int, dims: int) -> None:
        super().__init__()
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        k = 3 if dims == 2 else 5
        self.body = nn.Sequential(conv(channels, channels, k, 1, k // 2, bias=False), bn(channels), nn.ReLU(),
                                  conv(channels, channels, k, 1, k // 2, bias=False), bn(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class ResNetTeacher(nn.Module):
    """ResNet-style teacher for images or (with ``dims=1``) time series: stem, then per stage a strided conv
    that doubles the width and ``blocks`` residual blocks; global average pool, dropout, linear."""

    feature_layer = "stages"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 32, blocks: int = 1,
                 stages: int = 3, dropout: float = 0.2) -> None:
        super().__init__()
        dims = len(input_shape) - 1
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        k = 3 if dims == 2 else 5
        self.stem = nn.Sequential(conv(input_shape[0], width, k, 1, k // 2, bias=False), bn(width), nn.ReLU())
        layers: list[nn.Module] = []
        channels, size = width, min(input_shape[1:])
        for stage in range(stages):
            out = width * 2**stage
            stride = 2 if stage > 0 and size > 2 else 1
            if stride == 2 or out != channels:
                layers += [conv(channels, out, k, stride, k // 2, bias=False), bn(out), nn.ReLU()]
                size = math.ceil(size / stride)
            layers += [_Block(out, dims) for _ in range(blocks)]
            channels = out
        self.stages = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = x.mean(tuple(range(2, x.dim())))
        return self.fc(self.dropout(x))


ARCHS: dict[str, Callable[..., nn.Module]] = {"resnet-teacher": ResNetTeacher}

def recipe(task: str) -> TeacherRecipe:
    """The built-in teacher recipe registered with ``task`` (the generic one for user data). Recipes were chosen
    to reach the accuracy bars (digits >= 98%, fashion-mnist >= 93.5%, basic-motions >= 95%) on 2 CPU cores in
    reasonable time; docs/benchmarks.md records what they reached and how long they took."""
    return TeacherRecipe.for_task(task)


def build_teacher(arch: str, params: dict[str, Any], spec: TaskSpec, where: str = "teacher") -> nn.Module:
    """Build a registered architecture; parameters it rejects are the file's fault (one line), not a traceback."""
    if not isinstance(arch, str) or arch not in ARCHS:
        raise EdgekdError(f"{where}: unknown teacher architecture {arch!r}; known: {', '.join(ARCHS)}")
    if not isinstance(params, dict):
        raise EdgekdError(f"{where}: teacher 'params' must be a mapping of {arch} parameters, got "
                          f"{type(params).__name__}")
    try:
        return ARCHS[arch](tuple(spec.input_shape), spec.num_classes, **params)
    except Exception as exc:  # a builder rejects bad values in many ways (TypeError, ValueError, RuntimeError)
        raise EdgekdError(f"{where}: {arch} cannot be built with params {params} ({first_line(exc)}); train a new "
                          f"teacher with `edgekd teacher --task {spec.name}`") from None


CPU = torch.device("cpu")


def runs_on_torch(module: nn.Module) -> bool:
    """Whether ``module`` is PyTorch all through, so it can move to the training device: ONNX Runtime and LiteRT
    teachers (alone or in an ensemble) take numpy arrays on the CPU."""
    from edgekd.distill.foreign import OnnxTeacher, TfliteTeacher

    return not any(isinstance(m, (OnnxTeacher, TfliteTeacher)) for m in module.modules())


@dataclass
class Teacher:
    """A loaded teacher: an eval-mode module plus what identifies it (for caches and reports).

    A PyTorch teacher runs on the device the student trains on (:func:`edgekd.distill.train.device`), since on a
    GPU machine a CPU teacher makes every teacher pass and cache fill CPU-bound; its logits come back on the CPU,
    where the cache and the losses' callers expect them. Foreign (ONNX, .tflite) teachers stay on their runtimes.
    """

    module: nn.Module
    sha256: str
    source: str  # "edgekd" | "pt2" | "factory"
    path: str
    feature_layer: str | None = None
    accuracy: float | None = None
    params: int = 0
    members: list[dict[str, Any]] | None = None  # an ensemble's teachers
    _device: torch.device | None = field(default=None, init=False, repr=False)
    _ran_on_device: bool = field(default=False, init=False, repr=False)
    _cpu_for_good: bool = field(default=False, init=False, repr=False)  # a foreign runtime, or the device failed it

    def place(self) -> torch.device:
        """Move the module to the training device (once; again if that device changes) and return the device."""
        from edgekd.distill import train  # train imports this module

        if self._device is None and not runs_on_torch(self.module):
            self._cpu_for_good = True
        dev = CPU if self._cpu_for_good else train.device()
        if dev != self._device:
            self.module.to(dev)
            self._device = dev
        return dev

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The module's output for ``x``, computed on the training device, returned on the CPU.

        An exported graph can hold tensors fixed on the CPU (a ``.pt2`` traced there), or the device can run out
        of memory: if the first batch fails on the device, the teacher moves back to the CPU for good, with a
        warning, rather than stop a run that the CPU can serve."""
        dev = self.place()
        with torch.no_grad():
            if dev == CPU:
                return self.module(x).detach()
            try:
                out = self.module(x.to(dev)).detach()
            except RuntimeError as exc:
                if self._ran_on_device:
                    raise
                log.warning("teacher %s fails on %s (%s); it runs on the CPU instead", self.path, dev, first_line(exc))
                self._cpu_for_good, self._device = True, CPU
                self.module.to(CPU)
                return self.module(x.cpu()).detach()
            self._ran_on_device = True
            return out.cpu()

    def predict(self, x: np.ndarray, batch: int = 512) -> np.ndarray:
        """Logits on normalised task inputs ``x`` (N, *input_shape), batched, as float32 numpy."""
        outs = [self.logits(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32))).float()
                for i in range(0, len(x), batch)]
        return torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)

    def describe(self) -> dict[str, Any]:
        out = {"path": self.path, "source": self.source, "sha256": self.sha256, "params": self.params,
               "accuracy": self.accuracy, "feature_layer": self.feature_layer}
        return out | ({"members": self.members} if self.members else {})


# ------------------------------------------------------------------ loading files safely

def first_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, for one-line messages."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def unpickle_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words (its own message is a page)."""
    text = str(exc)
    called = re.search(r"GLOBAL ([\w.]+)", text)
    if called:
        return f"it holds a pickle that would call {called.group(1)}, refused"
    if isinstance(exc, EOFError) or re.search(r"central directory|failed finding|truncated|Ran out of input|"
                                               r"invalid header|file not found", text, re.I):
        return "truncated, empty or not a torch file"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(
        ("Weights only load failed", "Check the documentation", "Please file an issue"))]
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


def weights_only_load(src: str | Path | bytes, prefix: str, fix: str) -> Any:
    """``torch.load`` that never runs code (``weights_only=True``); a truncated, garbage or unsafe file is one
    EdgekdError line: ``prefix (why); fix``."""
    try:
        return torch.load(io.BytesIO(src) if isinstance(src, bytes) else src, map_location="cpu",
                          weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise EdgekdError(f"{prefix} ({unpickle_reason(exc)}); {fix}") from None


def state_dict_problem(model: nn.Module, state: Any) -> str | None:
    """What keeps ``state`` from loading into ``model`` (strictly), or None: said before load_state_dict, whose
    own error is many lines."""
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        return f"the weights are a {type(state).__name__}, not a state dict (names -> tensors)"
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing:
        return f"{len(missing)} weight(s) missing, e.g. {missing[0]!r}"
    if unexpected:
        return f"{len(unexpected)} unexpected weight(s), e.g. {unexpected[0]!r}"
    for key, value in own.items():
        given = state[key]
        if isinstance(value, torch.Tensor):
            if not isinstance(given, torch.Tensor):
                return f"{key!r} is a {type(given).__name__}, not a tensor"
            if tuple(given.shape) != tuple(value.shape):
                return f"{key!r} has shape {tuple(given.shape)}, the model needs {tuple(value.shape)}"
    return None


def load_weights(model: nn.Module, state: Any, where: str, fix: str) -> None:
    """``model.load_state_dict(state)`` (strict), a mismatch as one line naming ``where``."""
    problem = state_dict_problem(model, state)
    if problem is None:
        try:
            model.load_state_dict(state)
        except Exception as exc:  # e.g. a dtype that cannot be copied
            problem = first_line(exc)
    if problem:
        raise EdgekdError(f"{where}: {problem}; {fix}")


def save_teacher(model: nn.Module, arch: str, params: dict[str, Any], spec: TaskSpec, path: Path,
                 extra: dict[str, Any]) -> None:
    atomic_torch_save({"format": FORMAT, "arch": arch, "params": params, "task": spec.to_dict(),
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}, path)


def _load_edgekd(path: Path, spec: TaskSpec) -> tuple[nn.Module, str, float | None]:
    fix = f"train a new one with `edgekd teacher --task {spec.name} --out {path}`"
    blob = weights_only_load(path, f"{path}: not a loadable teacher file",
                             "expected an edgekd teacher (.pt), a torch.export program (.pt2) or --teacher "
                             "module:factory")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise EdgekdError(f"{path}: not an edgekd teacher file (no '{FORMAT}' marker); for a plain state dict "
                          "use --teacher package.module:factory --teacher-weights FILE")
    missing = [k for k in ("arch", "params", "state_dict", "task") if k not in blob]
    if missing:
        raise EdgekdError(f"{path}: edgekd teacher file without {', '.join(map(repr, missing))} (damaged or edited); "
                          f"{fix}")
    task = blob["task"]
    try:
        shape, classes = tuple(task.get("input_shape", ())), task.get("num_classes")
    except (AttributeError, TypeError):
        raise EdgekdError(f"{path}: the teacher's 'task' record is damaged; {fix}") from None
    if shape != tuple(spec.input_shape) or classes != spec.num_classes:
        raise EdgekdError(f"{path}: teacher was trained for task {task.get('name')!r} with input {shape} and "
                          f"{classes} classes; task {spec.name!r} has input {spec.input_shape} and "
                          f"{spec.num_classes} classes")
    model = build_teacher(blob["arch"], blob["params"], spec, where=str(path))
    load_weights(model, blob["state_dict"], f"{path}: the weights do not fit {blob['arch']} {blob['params']}",
                 f"the file is damaged or edited; {fix}")
    return model, getattr(model, "feature_layer", None), blob.get("test_accuracy")


def module_from_file(ref: str, file: Path, option: str = "--teacher", reuse: bool = False) -> Any:
    """Import ``file`` (named by the user with ``option``) as a module of its own; nothing else is imported or
    run. ``reuse`` returns the module this process already imported from that file instead of running it again."""
    if not file.is_file():
        raise EdgekdError(f"{option} {ref}: no such file {file}")
    kind = option.lstrip("-")
    name = f"edgekd_user_{kind}_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]}"
    if reuse and name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise EdgekdError(f"{option} {ref}: {file} cannot be loaded as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's file can fail in any way
        sys.modules.pop(name, None)
        raise EdgekdError(f"{option} {ref}: running {file} raised {first_line(exc)}") from None
    return module


def _import_factory(ref: str) -> Callable[[], Any]:
    module_ref, _, attr = ref.rpartition(":")
    if not module_ref or not attr.isidentifier():
        raise EdgekdError(f"--teacher {ref}: expected package.module:factory or path/to/file.py:factory")
    if module_ref.endswith(".py") or "/" in module_ref or os.sep in module_ref:
        module = module_from_file(ref, Path(module_ref))
    else:
        try:
            module = importlib.import_module(module_ref)
        except ModuleNotFoundError as exc:
            if exc.name and (module_ref == exc.name or module_ref.startswith(f"{exc.name}.")):
                raise EdgekdError(f"--teacher {ref}: cannot import {module_ref!r} (no module named {exc.name!r} on "
                                  f"the Python path); pass the file instead, --teacher "
                                  f"path/to/{module_ref.rsplit('.', 1)[-1]}.py:{attr}, or add its folder to "
                                  "PYTHONPATH") from None
            raise EdgekdError(f"--teacher {ref}: importing {module_ref!r} failed: {exc}; install what it "
                              "needs") from None
        except (Exception, SystemExit) as exc:  # the user's module ran and failed
            raise EdgekdError(f"--teacher {ref}: importing {module_ref!r} raised {first_line(exc)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise EdgekdError(f"--teacher {ref}: cannot import {attr!r} from {module_ref!r} (no such name in it)")
    if not callable(factory):
        raise EdgekdError(f"--teacher {ref}: {attr!r} is a {type(factory).__name__}, not a function returning a "
                          "torch.nn.Module")
    return factory


def _load_factory(ref: str, weights: str | None) -> nn.Module:
    factory = _import_factory(ref)
    try:
        model = factory()
    except (Exception, SystemExit) as exc:  # a user factory can fail in any way
        raise EdgekdError(f"--teacher {ref}: the factory raised {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise EdgekdError(f"--teacher {ref}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    if weights:
        if not Path(weights).is_file():
            raise EdgekdError(f"--teacher-weights {weights}: no such file")
        state = weights_only_load(Path(weights), f"--teacher-weights {weights}: not a state dict loadable with "
                                  "weights_only=True", "save it with torch.save(model.state_dict(), PATH)")
        load_weights(model, state, f"--teacher-weights {weights}: does not match {ref}",
                     "save the weights of the module this factory builds")
    return model


def load_teacher(ref: str, spec: TaskSpec, weights: str | None = None, feature_layer: str | None = None,
                 probe: np.ndarray | None = None) -> Teacher:
    """Load a teacher from an edgekd teacher file, a ``.pt2`` export, an ``.onnx`` or ``.tflite`` file (see
    :mod:`edgekd.distill.foreign`) or ``module:factory``; check its output."""
    path = Path(ref)
    if ":" in ref and not path.exists():
        model, source = _load_factory(ref, weights), "factory"
        sha = sha256_file(weights) if weights else hashlib.sha256(ref.encode()).hexdigest()
        acc = None
        layer = feature_layer
    elif not path.is_file():
        raise EdgekdError(f"--teacher {ref}: no such file; train one with `edgekd teacher --task {spec.name} "
                          "--out teacher.pt` or pass package.module:factory")
    elif path.suffix.lower() in (".onnx", ".tflite"):
        from edgekd.distill.foreign import load_foreign

        if feature_layer:
            raise EdgekdError(f"{path}: an {path.suffix} teacher gives logits only; feature distillation is "
                              "PyTorch-only: use --teacher package.module:factory with --teacher-layer")
        model, sha = load_foreign(path, spec), sha256_file(path)
        source, acc, layer = path.suffix.lower().lstrip("."), None, None
    elif path.suffix == ".pt2":
        from edgekd.distill.pt2 import load_pt2

        model, sha = load_pt2(path)
        source, acc, layer = "pt2", None, None
        if feature_layer:
            raise EdgekdError(f"{path}: a .pt2 teacher gives logits only; feature distillation needs "
                              "--teacher package.module:factory with --teacher-layer")
    else:
        model, layer, acc = _load_edgekd(path, spec)
        source, sha = "edgekd", sha256_file(path)
        layer = feature_layer or layer
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):  # exported programs are captured in eval mode already
        pass
    if layer and layer not in dict(model.named_modules()):
        raise EdgekdError(f"--teacher-layer {layer}: the teacher has no such module")
    sample = torch.zeros(2, *spec.input_shape) if probe is None else torch.as_tensor(probe[:2], dtype=torch.float32)
    try:
        with torch.no_grad():
            out = model(sample)
    except Exception as exc:  # a user model can fail in any way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = " (export the .pt2 with a dynamic batch dimension)" if path.suffix == ".pt2" else ""
        raise EdgekdError(f"--teacher {ref}: fails on a batch of task {spec.name!r} inputs of shape "
                          f"{spec.input_shape}{hint}: {first}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sample), spec.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EdgekdError(f"--teacher {ref}: outputs {got} for a batch of {len(sample)}, but task {spec.name!r} "
                          f"needs ({len(sample)}, {spec.num_classes}) logits")
    params = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
    return Teacher(model, sha, source, str(ref), layer, acc, params)


def load_teachers(refs: list[str], spec: TaskSpec, weights: str | None = None, feature_layer: str | None = None,
                  probe: np.ndarray | None = None) -> Teacher:
    """One teacher, or several as an ensemble whose logits are the mean of theirs (logit distillation only)."""
    if len(refs) == 1:
        return load_teacher(refs[0], spec, weights, feature_layer, probe)
    if weights or feature_layer:
        raise EdgekdError("--teacher-weights and --teacher-layer apply to one teacher; an ensemble of several "
                          "--teacher gives averaged logits only")
    from edgekd.distill.foreign import Ensemble

    members = [load_teacher(ref, spec, None, None, probe) for ref in refs]
    sha = hashlib.sha256("|".join(m.sha256 for m in members).encode()).hexdigest()
    module = Ensemble([m.module for m in members]).eval()
    return Teacher(module, sha, "ensemble", " + ".join(refs), None, None, sum(m.params for m in members),
                   members=[m.describe() for m in members])
