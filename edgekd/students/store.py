"""The student store: how a trained student is saved and loaded, and the fixed data seed every stage shares.

``student.pt`` is written by ``distill`` and read by export, verify, latency and the build report; keeping its
name, format marker and reader here (not in ``edgekd.distill``) lets those readers depend on the file format
only, not on the training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.io import atomic_torch_save
from edgekd.students import StudentConfig, build_student, model_input_shape

if TYPE_CHECKING:
    from edgekd.data import Splits

STUDENT_FORMAT = "edgekd-student/1"
STUDENT_FILE = "student.pt"
DISTILL_JSON = "distill.json"
DATA_SEED = 0  # splits are fixed across training seeds so runs compare on the same validation/test data


def save_student(model: nn.Module, config: StudentConfig, splits: Splits, path: Path,
                 qat_state: dict[str, torch.Tensor] | None = None) -> None:
    atomic_torch_save({"format": STUDENT_FORMAT, "family": config.family, "config": dict(config.params),
                       "task": splits.spec.to_dict(), "input_shape": list(model_input_shape(model)),
                       "channels_last_input": bool(model.channels_last_input),
                       "normalization": splits.normalization,
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                       "qat_state": qat_state}, path)


def load_student(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a student from ``student.pt`` (or its folder); returns (module in eval mode, the saved record)."""
    from edgekd.distill.teachers import first_line, load_weights, weights_only_load  # distill imports this module

    path = Path(path)
    if path.is_dir():
        path = path / STUDENT_FILE
    if not path.is_file():
        raise EdgekdError(f"{path}: no student here; run `edgekd distill ... --out DIR` first")
    fix = "re-run `edgekd distill ... --out DIR` to write it again"
    blob = weights_only_load(path, f"{path}: not a loadable student file", fix)
    if not isinstance(blob, dict) or blob.get("format") != STUDENT_FORMAT:
        raise EdgekdError(f"{path}: not an edgekd student file (no '{STUDENT_FORMAT}' marker); {fix}")
    missing = [k for k in ("family", "config", "task", "input_shape", "state_dict") if k not in blob]
    if missing:
        raise EdgekdError(f"{path}: edgekd student file without {', '.join(map(repr, missing))} (damaged or "
                          f"edited); {fix}")
    task, family, config = blob["task"], blob["family"], blob["config"]
    try:
        shape, classes = tuple(int(v) for v in task["input_shape"]), int(task["num_classes"])
        str(task["name"])
    except (KeyError, TypeError, ValueError):
        raise EdgekdError(f"{path}: the student's task record is damaged; {fix}") from None
    if not isinstance(family, str) or not isinstance(config, dict):
        raise EdgekdError(f"{path}: the student's family/config record is damaged; {fix}")
    qat_state = blob.get("qat_state")
    if qat_state is not None and not (isinstance(qat_state, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in qat_state.items())):
        raise EdgekdError(f"{path}: the student's qat_state is not a state dict; {fix}")
    try:
        model = build_student(StudentConfig(family, config), shape, classes)
    except EdgekdError as exc:
        raise EdgekdError(f"{path}: {exc}; {fix}") from None
    except Exception as exc:  # a family builder rejects bad values in many ways
        raise EdgekdError(f"{path}: {family} cannot be built with {config} ({first_line(exc)}); {fix}") from None
    load_weights(model, blob["state_dict"], f"{path}: the weights do not fit {family} {config}",
                 f"the file is damaged or edited; {fix}")
    return model.eval(), blob
