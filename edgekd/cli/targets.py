"""`edgekd targets list | show | validate`: the device profiles."""

from __future__ import annotations

import sys

import click

from edgekd.cli.shell import emit_json, handle_errors, main
from edgekd.errors import EdgekdError


@main.group()
def targets() -> None:
    """List, show and validate device profiles (targets/*.yaml)."""


@targets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--class", "klass", type=click.Choice(["phone", "sbc", "mcu"]), help="Only this device class.")
@handle_errors
def targets_list(as_json: bool, klass: str | None) -> None:
    """All known targets with their budgets."""
    from edgekd.targets import load_all, table

    found = [t for t in load_all() if klass is None or t.klass == klass]
    emit_json([t.summary() for t in found]) if as_json else click.echo(table(found))


@targets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def targets_show(name: str, as_json: bool) -> None:
    """One target profile in full (NAME or path to a YAML file)."""
    from edgekd.targets import load_target

    t = load_target(name)
    emit_json(t.to_dict()) if as_json else click.echo(t.text())


@targets.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def targets_validate(file: str, as_json: bool) -> None:
    """Check a profile against the schema: exit 0 when valid, 2 with one line naming the field when not."""
    from edgekd.targets import load_target_file

    try:
        t = load_target_file(file)
    except EdgekdError as exc:
        if as_json:
            emit_json({"file": file, "valid": False, "error": str(exc)})
        click.echo(f"edgekd: error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        emit_json({"file": file, "valid": True, "name": t.name, "class": t.klass})
    else:
        click.echo(f"{file}: valid ({t.name}, {t.klass})")
