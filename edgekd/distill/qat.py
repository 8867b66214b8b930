"""Quantization-aware fine-tuning with the same PT2E quantizer family the TFLite exporter uses.

BatchNorm is folded into the convolutions first (BN frozen, as is usual late in QAT). That also sidesteps
litert-torch 0.10's conv+BN QAT annotators, which fail under torch 2.13 (they hand a plain function to
``torch.export``). The fine-tuned fake-quant graph's state is saved with the student; rebuilding it is
deterministic (fold, export, prepare, load state), so the exporter converts exactly what was trained.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edgekd.data import Splits
from edgekd.distill import augment
from edgekd.distill.losses import build_loss
from edgekd.distill.teachers import Teacher
from edgekd.distill.train import TrainConfig, accuracy, fit, predict, set_training
from edgekd.students import model_input_shape


class ResidualAddQuantizer(PT2EQuantizer):
    """litert-torch's PT2E quantizer that also quantizes residual adds not followed by a ReLU.

    Under torch 2.13 litert-torch 0.10's ``add`` annotator finds adds through ``source_fn_stack`` partitions,
    which ``x + y`` in a module's forward no longer yields, so an ``aten.add.Tensor`` of two activations
    without a following ReLU stays in float: a DEQUANTIZE / ADD / QUANTIZE island in the .tflite (MobileNet v2
    style blocks). Adds the stock patterns did annotate (``add_relu``) are left exactly as they were.
    """

    def _annotate_all_static_patterns(self, model: torch.fx.GraphModule, quantization_config: Any,
                                      filter_fn: Any = None) -> torch.fx.GraphModule:
        from litert_torch.quantize.pt2e_quantizer_utils import (
            QuantizationAnnotation,
            get_input_act_qspec,
            get_output_act_qspec,
        )

        super()._annotate_all_static_patterns(model, quantization_config, filter_fn)
        if quantization_config is None:
            return model
        for node in model.graph.nodes:
            if node.op != "call_function" or node.target != torch.ops.aten.add.Tensor:
                continue
            if "quantization_annotation" in node.meta or (filter_fn is not None and not filter_fn(node)):
                continue
            inputs = [a for a in node.args[:2] if isinstance(a, torch.fx.Node) and a.op != "get_attr"]
            if len(inputs) != 2:
                continue  # only activation + activation: a residual, not a bias or a constant
            qspec = get_input_act_qspec(quantization_config)
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: qspec for a in inputs}, output_qspec=get_output_act_qspec(quantization_config),
                _annotated=True)
        return model


class FoldedQATQuantizer(ResidualAddQuantizer):
    """The residual-add quantizer without the conv+BN QAT patterns (BN is folded before QAT)."""

    STATIC_QAT_ONLY_OPS: list[str] = []


def qat_quantizer() -> FoldedQATQuantizer:
    return FoldedQATQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every Conv->BatchNorm pair inside nn.Sequential containers into the conv (in place, eval stats)."""
    model.eval()
    for child in model.children():
        if isinstance(child, nn.Sequential):
            for i in range(len(child) - 1):
                conv, bn = child[i], child[i + 1]
                if isinstance(conv, nn.Conv1d | nn.Conv2d) and isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d):
                    child[i] = fuse_conv_bn_eval(conv, bn)
                    child[i + 1] = nn.Identity()
        fold_batchnorm(child)
    return model


def prepare_qat(model: nn.Module) -> torch.fx.GraphModule:
    """Fake-quantized training graph of a (float, trained) student; batch size is dynamic."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    folded = fold_batchnorm(copy.deepcopy(model)).train()
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    sample = torch.zeros(2, *model_input_shape(model))
    program = torch.export.export(folded, (sample,), dynamic_shapes=({0: batch},))
    prepared = prepare_qat_pt2e(program.module(), qat_quantizer())
    prepared.input_shape = model_input_shape(model)
    return prepared


def rebuild_qat(model: nn.Module, qat_state: dict[str, torch.Tensor]) -> torch.fx.GraphModule:
    prepared = prepare_qat(model)
    prepared.load_state_dict(qat_state)
    set_training(prepared, False)
    return prepared


def qat_finetune(model: nn.Module, splits: Splits, teacher: Teacher | None, loss: str, cfg: TrainConfig,
                 epochs: int, loss_args: dict[str, Any] | None, cache: Any, progress: bool = True
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Fine-tune ``model``'s fake-quant graph for ``epochs`` at a tenth of the learning rate."""
    from edgekd.distill.online import OnlineTeacher

    shape = model_input_shape(model)
    prepared = prepare_qat(model)
    qat_loss = "kd" if loss == "feature" else loss  # the fake-quant graph has no named layers for hints
    loss_fn = build_loss(qat_loss, **({} if qat_loss != loss else (loss_args or {})))
    online = OnlineTeacher(teacher) if loss_fn.needs_teacher and teacher is not None and cache is None else None
    teacher_fn = cache if cache is not None and loss_fn.needs_teacher else online
    qcfg = TrainConfig(**(cfg.to_dict() | {"epochs": epochs, "lr": cfg.lr / 10, "patience": 0}))
    policy = augment.Policy.for_task(splits.spec.name, splits.spec.kind, cfg.augment)
    try:
        result = fit(prepared, splits.x_train, splits.y_train, splits.x_val, splits.y_val, shape, loss_fn, qcfg,
                     policy, teacher=teacher_fn, label="qat", progress=progress)
    finally:
        if online is not None:
            online.close()  # the teacher is shared: its feature hook must not outlive this run
    test = accuracy(predict(prepared, splits.x_test, shape), splits.y_test)
    state = {k: v.detach().cpu().clone() for k, v in prepared.state_dict().items()}
    return state, {"loss": qat_loss, "epochs": epochs, "lr": qcfg.lr, "fake_quant_test_accuracy": test,
                   **result.to_dict()}
