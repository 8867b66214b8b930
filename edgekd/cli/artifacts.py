"""`edgekd export | verify | codegen | latency`: the deployable files and their checks."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgekd.cli.shell import (
    budget_options,
    csv_list,
    emit_json,
    emulator_options,
    handle_errors,
    load_target_with_budgets,
    main,
)
from edgekd.errors import EdgekdError


@main.command("export")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@click.option("--student", required=True, type=click.Path(), help="Folder with student.pt (from edgekd distill).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Build folder to write.")
@click.option("--formats", help="Comma-separated: tflite, pte, c (default: the target's formats).")
@click.option("--precision", help="Comma-separated: int8, fp32 (default: int8 on MCUs, int8,fp32 elsewhere).")
@click.option("--calib-size", default=500, show_default=True, type=click.IntRange(min=1),
              help="Calibration samples drawn from the task's calibration split (see calibration/).")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def export_cmd(target_name: str, student: str, out_dir: str, formats: str | None, precision: str | None,
               calib_size: int, ram_budget: str | None, flash_budget: str | None, latency_budget: str | None,
               as_json: bool) -> None:
    """Export a trained student to every format TARGET runs; writes OUT/export.json and the artifacts."""
    from edgekd.export import export_student

    result = export_student(target_name, student, out_dir, csv_list(formats), csv_list(precision), calib_size,
                            {"ram": ram_budget, "flash": flash_budget, "latency": latency_budget})
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(result.text(out_dir))


@main.command("verify")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Largest accuracy drop vs the float student, in percentage points.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate an evenly spaced sample of the test set.")
@emulator_options(["qemu"], None)
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def verify_cmd(target_name: str, build_dir: str, max_drop: float, limit: int | None, emulator: str | None,
               emulator_limit: int, emulator_timeout: float, ram_budget: str | None,
               flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """Run BUILD_DIR's artifacts on their runtimes and check the gates; exit 1 when one fails."""
    from edgekd.verify import verify_build

    result = verify_build(target_name, build_dir, max_drop, limit,
                          budgets={"ram": ram_budget, "flash": flash_budget, "latency": latency_budget},
                          emulator=emulator, emulator_limit=emulator_limit or None,
                          emulator_timeout_s=emulator_timeout)
    if as_json:
        emit_json(result.to_json())
    else:
        click.echo(result.text(build_dir))
    if not result.passed:
        sys.exit(1)


@main.command("codegen")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the C sources.")
@click.option("--target", "target_name", help="Also link the firmware into this microcontroller's budgets.")
@click.option("--check", default=64, show_default=True, type=click.IntRange(min=0),
              help="Random int8 inputs compared byte for byte with TFLite Micro (0 = no check).")
@click.option("--small", is_flag=True,
              help="Kernels for flash over speed (EK_SMALL: no assembly; docs/benchmarks.md has both figures).")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def codegen_cmd(model: str, out_dir: str, target_name: str | None, check: int, small: bool, ram_budget: str | None,
                flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """Generate C99 inference code (model.h: edgekd_invoke) from a fully-integer int8 .tflite; exit 1 when it
    does not match TFLite Micro."""
    from edgekd.codegen import codegen_model
    from edgekd.codegen.check import codegen_text

    if not Path(model).is_file():
        raise EdgekdError(f"{model}: no such file; give a fully-integer int8 .tflite (edgekd export writes one)")
    target = load_target_with_budgets(target_name, ram_budget, flash_budget, latency_budget) if target_name else None
    result = codegen_model(model, out_dir, target, check, small=small)
    emit_json(result) if as_json else click.echo(codegen_text(result))
    if result["check"] and not result["check"]["bit_exact_vs_tflm"]:
        sys.exit(1)


@main.command("latency")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@click.argument("model", type=click.Path())
@click.option("--emulator", type=click.Choice(["qemu"]),
              help="Count the .tflite's instructions on the target's emulated core instead of estimating.")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def latency_cmd(target_name: str, model: str, emulator: str | None, ram_budget: str | None, flash_budget: str | None,
                latency_budget: str | None, as_json: bool) -> None:
    """Latency of MODEL (.tflite, or a build/student folder) on TARGET; exit 1 when over the budget."""
    from edgekd.latency import model_latency

    report = model_latency(load_target_with_budgets(target_name, ram_budget, flash_budget, latency_budget), model,
                           emulator)
    emit_json(report.to_dict()) if as_json else click.echo(report.text())
    if not report.passed:
        sys.exit(1)
