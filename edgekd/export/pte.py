"""ExecuTorch ``.pte`` lowered to the XNNPACK delegate: int8 (PT2E ``XNNPACKQuantizer``, per-channel) and fp32.

Input and output stay float (NCHW, as the PyTorch model takes them); quantization happens inside the delegate.
Every node XNNPACK does not take runs on ExecuTorch's portable kernels, which are about 100x slower
(docs/stack), so the exporter reports delegated vs non-delegated nodes and names any fallback operator.
A QAT student's trained fake-quant graph is lowered as it is (its quantize/dequantize pairs are what XNNPACK
pattern-matches), so what was trained is what ships.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgekd.io import atomic_path
from edgekd.logs import log, native_quiet

#: Graph nodes that are bookkeeping, not kernels: never "fallbacks" even when outside the delegate.
_NOT_KERNELS = {"getitem"}


def _quantize(model: torch.nn.Module, sample: torch.Tensor, calibration: np.ndarray) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (sample,)).module(), quantizer)
    with torch.no_grad():
        for row in calibration:  # batch size 1, like the exported program
            prepared(torch.from_numpy(np.ascontiguousarray(row[None])))
    return convert_pt2e(prepared)


def _delegation(edge: Any) -> dict[str, Any]:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    frame = info.get_operator_delegation_dataframe()
    fallbacks = {str(row["op_type"]): int(row["occurrences_in_non_delegated_graphs"]) for _, row in frame.iterrows()
                 if row["op_type"] != "Total" and row["op_type"] not in _NOT_KERNELS
                 and int(row["occurrences_in_non_delegated_graphs"]) > 0}
    return {"delegated_nodes": int(info.num_delegated_nodes), "non_delegated_nodes": int(info.num_non_delegated_nodes),
            "delegated_subgraphs": int(info.num_delegated_subgraphs), "portable_fallback_ops": fallbacks}


def export_pte(model: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path,
               calibration: np.ndarray | None = None,
               qat_state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Write an XNNPACK ``.pte`` to ``path`` (atomically): int8 when ``calibration`` or ``qat_state`` is given.

    Returns what was lowered: delegation counts, portable fallbacks, and the memory ExecuTorch planned for
    activations outside the delegate.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    path = Path(path)
    model = copy.deepcopy(model).eval()
    sample = torch.zeros(1, *input_shape)
    with native_quiet():
        if qat_state is not None:
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

            from edgekd.distill.qat import rebuild_qat

            model = convert_pt2e(rebuild_qat(model, qat_state))
        elif calibration is not None:
            model = _quantize(model, sample, calibration.astype(np.float32))
        edge = to_edge_transform_and_lower(torch.export.export(model, (sample,)),
                                           partitioner=[XnnpackPartitioner()])
        delegation = _delegation(edge)
        program = edge.to_executorch()
    with atomic_path(path) as tmp:
        tmp.write_bytes(program.buffer)
    plan = program.executorch_program.execution_plan[0]
    if delegation["portable_fallback_ops"]:
        log.warning("%s: %s run on ExecuTorch's portable kernels, not XNNPACK (much slower)", path.name,
                    ", ".join(delegation["portable_fallback_ops"]))
    return {"delegation": delegation, "planned_memory_bytes": int(sum(plan.non_const_buffer_sizes)),
            "input_shape": [1, *input_shape], "io_dtype": "float32"}
