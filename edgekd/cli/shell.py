"""What every verb shares: the top-level group, the one-line error contract (exit 2 bad input, 3 internal
error with a log), and the options several verbs take."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from edgekd import __version__, logs
from edgekd.errors import EdgekdError


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One line on stderr for every failure: EdgekdError is exit 2, anything else exit 3 with a log file."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except EdgekdError as exc:
            fail(exc)
        except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into one line and a log
            fail(exc)

    return wrapper


def fail(exc: BaseException) -> None:
    """Print ``exc`` as the one stderr line of the README's contract and exit with its code."""
    from edgekd.errors import EXIT_INTERNAL, environment_error, internal_error

    if isinstance(exc, BrokenPipeError):  # `edgekd ... | head`: the reader left, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    if isinstance(exc, EdgekdError):
        message, code = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, exc.exit_code
    elif (env := environment_error(exc)) is not None:
        message, code = str(env), env.exit_code
    else:
        ctx = click.get_current_context(silent=True)
        where = [_command_path(ctx), json.dumps(ctx.params, default=str)] if ctx else sys.argv
        message, code = internal_error(exc, where), EXIT_INTERNAL
    if logs.VERBOSE and not isinstance(exc, EdgekdError):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    click.echo(f"edgekd: error: {message}", err=True)
    sys.exit(code)


def _command_path(ctx: click.Context) -> str:
    """``edgekd package verify``, also under test runners that name the program otherwise."""
    root = ctx.find_root().info_name or ""
    return "edgekd" + ctx.command_path[len(root):] if ctx.command_path.startswith(root) else ctx.command_path


class _Main(click.Group):
    """The top-level group: click's own usage errors become one line and exit 2, Ctrl-C is exit 130."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("standalone_mode", None)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.exceptions.UsageError as exc:
            hint = f" (see '{_command_path(exc.ctx)} -h')" if exc.ctx else ""
            click.echo(f"edgekd: error: {exc.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.exceptions.ClickException as exc:
            click.echo(f"edgekd: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo("edgekd: interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - verbs without handle_errors end here too
            fail(exc)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekd")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging; print the traceback of an internal error.")
def main(verbose: bool) -> None:
    """edgekd: distil a PyTorch teacher into a small quantized student that fits a named device."""
    logs.setup(verbose)


def budget_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--latency-budget", help="Override the latency budget, e.g. 50ms.")(fn)
    fn = click.option("--flash-budget", help="Override the model flash/storage budget, e.g. 256KiB.")(fn)
    fn = click.option("--ram-budget", help="Override the RAM / tensor-arena budget, e.g. 64KB or 64KiB.")(fn)
    return fn


def distill_data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options `distill` and `build` share for few labels, unlabelled samples and function matching."""
    fn = click.option("--views", default=0, show_default=True, type=click.IntRange(min=0),
                      help="Cycle this many fixed augmentation draws when distilling, so the teacher runs that many "
                           "passes (cached) however long the schedule; 0: a fresh draw (and teacher pass) each "
                           "epoch.")(fn)
    fn = click.option("--mix", default="none", show_default=True,
                      help="Function matching: mixup | cutmix | none; half the samples are shown mixed and learn "
                           "the teacher's output on the mixed image.")(fn)
    fn = click.option("--allow-weak-teacher", is_flag=True,
                      help="Distil even from a teacher at chance level on validation.")(fn)
    fn = click.option("--labels", type=click.IntRange(min=1),
                      help="Keep this many training labels (stratified, seeded); the other training samples become "
                           "unlabelled.")(fn)
    return fn


def load_target_with_budgets(name: str, ram: str | None, flash: str | None, latency: str | None) -> Any:
    from edgekd.targets import load_target

    return load_target(name).with_budgets(flash=flash, ram=ram, latency=latency)


def task_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--data-dir", help="Where the task's data lives (e.g. fashion-mnist files).")(fn)
    fn = click.option("--task", default="digits", show_default=True,
                      help="Built-in task name, an .npz file or an image folder.")(fn)
    return fn


def spec_checked(task: str, data_dir: str | None) -> Any:
    """The task's spec; with an explicit --data-dir, also check the data is really there (a typo should fail
    now, not after planning)."""
    from edgekd.data import get_spec, load_task

    if data_dir is not None:
        load_task(task, data_dir, limit=10)
    return get_spec(task, data_dir)


def csv_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def emulator_options(choices: list[str], default: str | None) -> Any:
    """--emulator / --emulator-limit / --emulator-timeout, shared by verify and build."""
    def wrap(fn: Any) -> Any:
        fn = click.option("--emulator-timeout", default=900.0, show_default=True, type=click.FloatRange(min=1),
                          help="Seconds one emulated run may take before it counts as hung (a failed gate).")(fn)
        fn = click.option("--emulator-limit", default=1000, show_default=True, type=click.IntRange(min=0),
                          help="Test samples run under emulation (evenly spaced; 0 = all verified samples).")(fn)
        return click.option("--emulator", type=click.Choice(choices), default=default, show_default=default is not None,
                            help="Also run the artifacts on the target's emulated core (qemu-aarch64 / "
                                 "qemu-system-arm), compare with the host and count instructions"
                                 + ("; auto = when the profile names a QEMU machine and QEMU is installed."
                                    if "auto" in choices else "."))(fn)
    return wrap


def finish(result: Any, as_json: bool) -> None:
    """Print a verb's typed result (``to_json()`` with --json, else ``text()``); exit 1 when it did not pass."""
    emit_json(result.to_json()) if as_json else click.echo(result.text())
    if not result.passed:
        sys.exit(1)
