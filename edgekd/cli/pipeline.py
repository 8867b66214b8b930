"""`edgekd build`: the whole pipeline for one or more targets."""

from __future__ import annotations

import click

from edgekd.cli.shell import (
    budget_options,
    csv_list,
    distill_data_options,
    emulator_options,
    finish,
    handle_errors,
    main,
    task_option,
)
from edgekd.errors import EdgekdError


@main.command("build")
@click.option("--target", "target_name", help="Target name or path to a YAML profile.")
@click.option("--targets", "targets_csv", help="Several targets, comma-separated, sharing one teacher.")
@click.option("--all", "all_targets", is_flag=True, help="Every known target.")
@task_option
@click.option("--data", "data_path", type=click.Path(),
              help="Your data (.npz or image folder) instead of --task; with a text --task, your sentences "
                   "(one a line, or .npz of strings).")
@click.option("--teacher", "teacher_ref",
              help="Teacher (.pt, .pt2, .onnx, .tflite, module:factory); default: train the task's built-in one.")
@click.option("--teacher-weights", help="State dict for a module:factory teacher (loaded with weights_only).")
@distill_data_options
@click.option("--unlabelled", type=click.Path(exists=True),
              help="Samples without labels (.npz with x, .npy, or an image folder): learnt from the teacher's outputs.")
@click.option("--min-accuracy", type=click.FloatRange(min=0, max=100),
              help="Accuracy gate: fail below this test accuracy, in percent (default: fail at chance level).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Build folder [default: builds/TARGET, or builds/ with one sub-folder per target].")
@click.option("--fast", is_flag=True, help="Smoke build: few epochs, a sample of the data (~2 min on digits).")
@click.option("--loss", default="kd", show_default=True, help="kd | dkd | dist | feature | ce (no teacher).")
@click.option("--epochs", type=click.IntRange(min=1), help="Distillation epochs [default: 20, --fast: 6].")
@click.option("--sentences", type=click.IntRange(min=1),
              help="Text tasks: training sentences the teacher embeds (cached) and the student learns from "
                   "[default: the task's recipe, 20,000; --fast: 1,024]; more is slower and closer to the teacher.")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning.")
@click.option("--search", "search_arg", default="0", show_default=True,
              help="N: try the planner's top N candidates with short runs; or an `edgekd search` folder / "
                   "frontier.json: train its chosen student.")
@click.option("--student", "student_ref", help="Your own student: file.py:factory, package.module:factory or a "
                                                "torch.export .pt2; costed and checked before training.")
@click.option("--baseline", is_flag=True, help="Also train the student without a teacher.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--family", "families", multiple=True, help="Only these student families (repeatable).")
@click.option("--ray", "on_ray", is_flag=True,
              help="Several targets: build each as a Ray task (a local Ray instance, or --cluster / $RAY_ADDRESS).")
@click.option("--cluster", help="Ray cluster for --ray: HOST:6379 or ray://HOST:10001 [default: $RAY_ADDRESS, else "
                                "a local Ray instance].")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --ray: CPUs and torch threads per target.")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False),
              help="Sign the bundle with this Ed25519 private key (edgekd keygen).")
@click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Largest int8 accuracy drop vs float, percentage points.")
@emulator_options(["auto", "qemu", "none"], "auto")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def build_cmd(target_name: str | None, targets_csv: str | None, all_targets: bool, task: str, data_dir: str | None,
              data_path: str | None, teacher_ref: str | None, teacher_weights: str | None, allow_weak_teacher: bool,
              labels: int | None, unlabelled: str | None, mix: str, views: int, min_accuracy: float | None,
              out_dir: str | None,
              fast: bool, loss: str, epochs: int | None, sentences: int | None,
              qat: bool, search_arg: str, student_ref: str | None, baseline: bool, seed: int,
              families: tuple[str, ...], on_ray: bool, cluster: str | None, threads: int,
              sign_key: str | None, max_drop: float, emulator: str, emulator_limit: int, emulator_timeout: float,
              ram_budget: str | None, flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """plan -> teacher -> distill -> export -> verify -> package; unchanged stages are skipped. Exit 1 on a gate."""
    from edgekd.build import BuildOptions, build_many, default_out
    from edgekd.build.text import text_options
    from edgekd.targets import load_all, load_target

    chosen = [t.name for t in load_all()] if all_targets else csv_list(targets_csv) or ([target_name] if target_name
                                                                                       else [])
    if not chosen:
        raise EdgekdError("name what to build: --target NAME, --targets a,b,c or --all")
    search, searched = (int(search_arg), None) if search_arg.strip().isdigit() else (0, search_arg)
    task, data_dir = text_options(task, data_path, data_dir)  # --data my.txt: a text task's own sentences
    opts = BuildOptions(task=task, data_dir=data_dir, teacher=teacher_ref, fast=fast, loss=loss,
                        teacher_weights=teacher_weights, allow_weak_teacher=allow_weak_teacher, labels=labels,
                        unlabelled=unlabelled, mix=mix, views=views,
                        min_accuracy=None if min_accuracy is None else min_accuracy / 100,
                        epochs=epochs, sentences=sentences, seed=seed, qat=qat, search=search, baseline=baseline,
                        student=student_ref, searched=searched,
                        families=list(families) or None, max_drop_pp=max_drop, progress=not as_json,
                        budgets={"ram": ram_budget, "flash": flash_budget, "latency": latency_budget},
                        emulator=emulator, emulator_limit=emulator_limit or None, emulator_timeout_s=emulator_timeout,
                        sign=sign_key)
    if out_dir is None:
        out_dir = str(default_out(load_target(chosen[0]))) if len(chosen) == 1 else "builds"
    if on_ray or cluster:
        from edgekd.build.cluster import build_on_ray

        result = build_on_ray(chosen, opts, out_dir, cluster, threads)
    else:
        result = build_many(chosen, opts, out_dir)
    finish(result, as_json)
