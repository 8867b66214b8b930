"""`edgekd teacher` and `edgekd distill`: training the teacher and distilling the student."""

from __future__ import annotations

import sys

import click

from edgekd.cli.shell import budget_options, distill_data_options, emit_json, handle_errors, main, task_option


@main.command("teacher")
@task_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the teacher (.pt).")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs (default: the task's recipe).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--limit", type=click.IntRange(min=1), help="Train on a stratified subset (smoke runs).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def teacher_cmd(task: str, data_dir: str | None, out: str, epochs: int | None, seed: int, limit: int | None,
                as_json: bool) -> None:
    """Train the built-in teacher for TASK (a ResNet-style CNN) and save it."""
    from edgekd.distill import train_teacher
    from edgekd.distill.summary import teacher_text

    record = train_teacher(task, out, epochs, seed, data_dir, limit, progress=not as_json)
    from edgekd.distill.train import is_main

    if not is_main():
        return
    if as_json:
        emit_json({k: v for k, v in record.items() if k != "history"})
    else:
        click.echo(teacher_text(record))


@main.command("distill")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@task_option
@click.option("--teacher", "teacher_ref", multiple=True,
              help="Teacher: edgekd teacher .pt, torch.export .pt2, .onnx, .tflite or module:factory; repeat it for "
                   "an ensemble (logits averaged).")
@click.option("--teacher-weights", help="State dict for a module:factory teacher (loaded with weights_only).")
@click.option("--teacher-layer", help="Teacher module whose output feeds feature distillation.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--loss", default="kd", show_default=True, help="kd | dkd | dist | feature | ce (no teacher).")
@click.option("--loss-arg", "loss_arg", multiple=True, help="Loss parameter, e.g. temperature=4 (repeatable).")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=3e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--patience", default=0, show_default=True, type=click.IntRange(min=0),
              help="Early stopping after this many epochs without validation gain (0: off).")
@click.option("--qat", is_flag=True, help="Fine-tune with quantization-aware training (PT2E) after float training.")
@click.option("--qat-epochs", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--search", default=0, show_default=True, type=click.IntRange(min=0),
              help="Try the planner's top N candidates with short runs and keep the best.")
@click.option("--student", "student_ref", help="Your own student: file.py:factory, package.module:factory or a "
                                                "torch.export .pt2; costed and checked before training.")
@click.option("--baseline", is_flag=True, help="Also train the same student without a teacher.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--aug-seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Augmentation stream; fixed across seeds so cached teacher outputs are reused.")
@click.option("--limit", type=click.IntRange(min=1), help="Train on a stratified subset (smoke runs).")
@click.option("--unlabelled", multiple=True, type=click.Path(),
              help="Samples without labels (.npz with x, .npy, or an image folder): learnt from the teacher's outputs.")
@distill_data_options
@click.option("--family", "families", multiple=True, help="Only these student families (repeatable).")
@click.option("--no-int8-check", is_flag=True, help="Skip the int8 export + TFLite Micro re-check.")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def distill_cmd(target_name: str, task: str, data_dir: str | None, teacher_ref: tuple[str, ...],
                teacher_weights: str | None, teacher_layer: str | None, out_dir: str, loss: str,
                loss_arg: tuple[str, ...], epochs: int, batch_size: int, lr: float, patience: int, qat: bool,
                qat_epochs: int, search: int, student_ref: str | None, baseline: bool, resume: bool, seed: int,
                aug_seed: int, limit: int | None, labels: int | None, unlabelled: tuple[str, ...],
                allow_weak_teacher: bool, mix: str, views: int, families: tuple[str, ...], no_int8_check: bool,
                ram_budget: str | None,
                flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """Train the student planned for TARGET (or --student, your own) from a teacher; writes OUT/student.pt and
    OUT/distill.json."""
    from edgekd.distill.losses import parse_loss_args
    from edgekd.distill.summary import distill_text
    from edgekd.students.user import distill_student

    result = distill_student(student_ref, target_name, task, list(teacher_ref) or None, out_dir, loss=loss,
                             epochs=epochs, qat=qat, qat_epochs=qat_epochs, search=search, resume=resume,
                             baseline=baseline, seed=seed, aug_seed=aug_seed, data_dir=data_dir, limit=limit,
                             teacher_weights=teacher_weights, teacher_layer=teacher_layer,
                             loss_args=parse_loss_args(loss_arg),
                             budgets={"ram": ram_budget, "flash": flash_budget, "latency": latency_budget},
                             families=list(families) or None, batch_size=batch_size, lr=lr, patience=patience,
                             verify_int8=not no_int8_check, progress=not as_json, labels=labels,
                             unlabelled=list(unlabelled) or None, allow_weak_teacher=allow_weak_teacher, mix=mix,
                             views=views)
    from edgekd.distill.train import is_main

    if not is_main():  # under torchrun only rank 0 reports
        return
    if as_json:
        emit_json(result)
    else:
        click.echo(distill_text(result, out_dir))
    if not result["fits"]:
        sys.exit(1)
