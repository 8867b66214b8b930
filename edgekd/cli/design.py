"""`edgekd plan` and `edgekd cost`: which student fits a target, and what one student costs."""

from __future__ import annotations

import sys

import click

from edgekd.cli.shell import (
    budget_options,
    emit_json,
    handle_errors,
    load_target_with_budgets,
    main,
    spec_checked,
    task_option,
)
from edgekd.errors import EdgekdError


@main.command("plan")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@task_option
@click.option("--family", "families", multiple=True, help="Only these student families (repeatable).")
@click.option("--top", default=5, show_default=True, help="How many runners-up to show.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG of all candidates.")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def plan_cmd(target_name: str, task: str, data_dir: str | None, families: tuple[str, ...], top: int,
             plot_path: str | None, ram_budget: str | None, flash_budget: str | None, latency_budget: str | None,
             as_json: bool) -> None:
    """The most capable student that fits every budget of TARGET for TASK."""
    from edgekd.planner import explain_no_fit, plan, plot_plan

    target = load_target_with_budgets(target_name, ram_budget, flash_budget, latency_budget)
    spec = spec_checked(task, data_dir)
    result = plan(target, spec, list(families) or None, progress=not as_json and sys.stderr.isatty())
    if plot_path:
        plot_plan(result, plot_path)
    if not result.fits:
        message = explain_no_fit(result)
        if as_json:
            emit_json(result.to_dict(top) | {"error": message})
        raise EdgekdError(message)
    if as_json:
        emit_json(result.to_dict(top))
        return
    click.echo(result.text(top, target.klass, spec.input_shape))


@main.command("cost")
@click.option("--family", required=True, help="Student family (dscnn, resnet, cnn1d, mlp).")
@click.option("--config", "config_text", default="", help="Family parameters, e.g. width=16,depth=4.")
@task_option
@click.option("--target", "target_name", help="Also estimate latency on this target.")
@click.option("--dtype", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def cost_cmd(family: str, config_text: str, task: str, data_dir: str | None, target_name: str | None,
             dtype: str, as_json: bool) -> None:
    """Per-layer cost table of one student: MACs, weights, activations, predicted arena."""
    from edgekd.data import get_spec
    from edgekd.planner import student_cost
    from edgekd.students import parse_config
    from edgekd.targets import load_target

    cost = student_cost(parse_config(family, config_text), get_spec(task, data_dir), dtype,
                        load_target(target_name) if target_name else None)
    if as_json:
        emit_json(cost.to_dict())
    else:
        click.echo(cost.text())
