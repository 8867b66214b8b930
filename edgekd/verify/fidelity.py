"""How closely a deployed artifact reproduces the float student: accuracy, agreement, output error."""

from __future__ import annotations

from typing import Any

import numpy as np


def fidelity(outputs: np.ndarray, float_outputs: np.ndarray, labels: np.ndarray,
             class_names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Test accuracy, top-1 agreement with the float model, max/mean absolute output error, per-class accuracy."""
    pred = outputs.argmax(1)
    err = np.abs(outputs.astype(np.float64) - float_outputs.astype(np.float64))
    per_class = {}
    for k, name in enumerate(class_names):
        mask = labels == k
        per_class[str(name)] = round(float((pred[mask] == k).mean()), 6) if mask.any() else None
    return {
        "accuracy": float((pred == labels).mean()),
        "agreement_with_float": float((pred == float_outputs.argmax(1)).mean()),
        "max_abs_err": float(err.max()),
        "mean_abs_err": float(err.mean()),
        "per_class_accuracy": per_class,
    }


def latency_summary(invoke_ms: list[float]) -> dict[str, float]:
    """Median and 90th percentile of per-invoke wall times (the first few are warm-up and skipped)."""
    ms = np.array(invoke_ms[min(5, len(invoke_ms) // 10):] or invoke_ms, dtype=np.float64)
    return {"median_ms": round(float(np.median(ms)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4)}
