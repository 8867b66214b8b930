"""The ExecuTorch runtime on the host: run a ``.pte`` (float I/O, NCHW) on task inputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from edgekd.logs import native_quiet


def run_pte(path: str | Path, x: np.ndarray, invoke_ms: list[float] | None = None) -> np.ndarray:
    """Outputs of the ``.pte``'s ``forward`` for each row of ``x`` (N, *model input); batch size 1 as exported.

    ``invoke_ms``, when given, receives the wall time of every execute.
    """
    from executorch.runtime import Runtime

    with native_quiet():
        method = Runtime.get().load_program(str(path)).load_method("forward")
        results = []
        for row in x:
            inp = torch.from_numpy(np.ascontiguousarray(row[None], dtype=np.float32))
            t = time.perf_counter()
            out = method.execute([inp])
            if invoke_ms is not None:
                invoke_ms.append((time.perf_counter() - t) * 1e3)
            results.append(out[0][0].numpy().copy())
    return np.stack(results)
