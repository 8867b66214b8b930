"""The ``edgekd`` command line. Thin: every verb calls one library function a Python user can call too.

Exit codes: 0 success, 1 a budget or gate failed, 2 bad input (one line on stderr saying what to do).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgekd import __version__, logs
from edgekd.errors import EdgekdError
from edgekd.units import format_bytes


def _emit_json(obj: Any) -> None:
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
    return " ".join(["edgekd", *ctx.command_path.split()[1:]])


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


def load_target_with_budgets(name: str, ram: str | None, flash: str | None, latency: str | None) -> Any:
    from edgekd.targets import load_target

    return load_target(name).with_budgets(flash=flash, ram=ram, latency=latency)


# ------------------------------------------------------------------ targets

@main.group()
def targets() -> None:
    """List, show and validate device profiles (targets/*.yaml)."""


@targets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--class", "klass", type=click.Choice(["phone", "sbc", "mcu"]), help="Only this device class.")
@handle_errors
def targets_list(as_json: bool, klass: str | None) -> None:
    """All known targets with their budgets."""
    from edgekd.targets import load_all

    found = [t for t in load_all() if klass is None or t.klass == klass]
    if as_json:
        _emit_json([t.summary() for t in found])
        return
    click.echo(f"{'name':<24} {'class':<6} {'cores':<17} {'MHz':>6} {'model budget':>13} {'RAM budget':>11} "
               f"{'latency':>9}")
    order = {"mcu": 0, "sbc": 1, "phone": 2}
    for t in sorted(found, key=lambda t: (order[t.klass], t.name)):
        b = t.budgets
        cores = f"{t.cpu.count}x {t.cpu.core}"
        click.echo(f"{t.name:<24} {t.klass:<6} {cores:<17} {t.cpu.clock_mhz:>6g} "
                   f"{format_bytes(b.flash_bytes):>13} {format_bytes(b.ram_bytes):>11} {b.latency_ms:>7g}ms")


@targets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def targets_show(name: str, as_json: bool) -> None:
    """One target profile in full (NAME or path to a YAML file)."""
    from edgekd.targets import load_target

    t = load_target(name)
    if as_json:
        _emit_json(t.to_dict())
        return
    click.echo(f"{t.name}: {t.title} [{t.klass}]")
    click.echo(f"  cpu        {t.cpu.count}x {t.cpu.core} @ {t.cpu.clock_mhz:g} MHz ({', '.join(t.cpu.isa)})")
    click.echo(f"  memory     flash {format_bytes(t.memory.flash_bytes)}, RAM {format_bytes(t.memory.ram_bytes)}")
    click.echo(f"  budgets    model {format_bytes(t.budgets.flash_bytes)}, RAM {format_bytes(t.budgets.ram_bytes)},"
               f" latency {t.budgets.latency_ms:g} ms")
    click.echo(f"  runtime    {', '.join(t.runtimes)} (overhead flash {format_bytes(t.runtime_flash_bytes)}, "
               f"RAM {format_bytes(t.runtime_ram_bytes)})")
    click.echo(f"  formats    {', '.join(t.formats)}; quantization {t.quantization}")
    click.echo(f"  operators  {', '.join(t.operators)}")
    tp = t.throughput
    click.echo(f"  throughput int8 {tp.int8_macs_per_cycle} (peak {tp.peak_int8_macs_per_cycle}) MACs/cycle/core, "
               f"fp32 {tp.fp32_macs_per_cycle} (peak {tp.peak_fp32_macs_per_cycle}), {tp.threads} thread(s)")
    emu = t.emulator
    click.echo(f"  emulator   {emu.kind} {emu.machine or ''} {emu.cpu or ''}".rstrip())
    for key, text in t.source.items():
        click.echo(f"  source.{key}: {text}")


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
            _emit_json({"file": file, "valid": False, "error": str(exc)})
        click.echo(f"edgekd: error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        _emit_json({"file": file, "valid": True, "name": t.name, "class": t.klass})
    else:
        click.echo(f"{file}: valid ({t.name}, {t.klass})")


# ------------------------------------------------------------------ plan

def _task_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--data-dir", help="Where the task's data lives (e.g. fashion-mnist files).")(fn)
    fn = click.option("--task", default="digits", show_default=True,
                      help="Built-in task name, an .npz file or an image folder.")(fn)
    return fn


def _spec_checked(task: str, data_dir: str | None) -> Any:
    """The task's spec; with an explicit --data-dir, also check the data is really there (a typo should fail
    now, not after planning)."""
    from edgekd.data import get_spec, load_task

    if data_dir is not None:
        load_task(task, data_dir, limit=10)
    return get_spec(task, data_dir)


@main.command("plan")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@_task_option
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
    spec = _spec_checked(task, data_dir)
    result = plan(target, spec, list(families) or None, progress=not as_json and sys.stderr.isatty())
    if plot_path:
        plot_plan(result, plot_path)
    if not result.fits:
        message = explain_no_fit(result)
        if as_json:
            _emit_json(result.to_dict(top) | {"error": message})
        raise EdgekdError(message)
    if as_json:
        _emit_json(result.to_dict(top))
        return
    best = result.student
    assert best is not None
    click.echo(f"target {target.name} ({target.klass}), task {spec.name} {spec.input_shape}, "
               f"{result.dtype} tensors; {sum(c.fits for c in result.candidates)}/{len(result.candidates)} "
               "candidates fit")
    click.echo(f"student: {best.label()}  params {best.params:,}  MACs {best.macs:,}")
    click.echo(f"  {'':<8} {'predicted':>12} {'budget':>12}")
    b = result.budgets
    p = best.predicted
    click.echo(f"  {'flash':<8} {format_bytes(p['flash_bytes']):>12} {format_bytes(b['flash_bytes']):>12}")
    click.echo(f"  {'RAM':<8} {format_bytes(p['ram_bytes']):>12} {format_bytes(b['ram_bytes']):>12}")
    click.echo(f"  {'latency':<8} {p['latency_ms']:>10.2f}ms {b['latency_ms']:>10.1f}ms  (estimated)")
    click.echo("runners-up:")
    for c in [c for c in result.candidates[1:] if c.fits][:top]:
        click.echo(f"  {c.label():<52} MACs {c.macs:>10,} flash {format_bytes(c.predicted['flash_bytes']):>10} "
                   f"RAM {format_bytes(c.predicted['ram_bytes']):>10} {c.predicted['latency_ms']:>8.2f}ms")


@main.command("cost")
@click.option("--family", required=True, help="Student family (dscnn, resnet, cnn1d, mlp).")
@click.option("--config", "config_text", default="", help="Family parameters, e.g. width=16,depth=4.")
@_task_option
@click.option("--target", "target_name", help="Also estimate latency on this target.")
@click.option("--dtype", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def cost_cmd(family: str, config_text: str, task: str, data_dir: str | None, target_name: str | None,
             dtype: str, as_json: bool) -> None:
    """Per-layer cost table of one student: MACs, weights, activations, predicted arena."""
    from edgekd.costmodel import analyze
    from edgekd.data import get_spec
    from edgekd.students import StudentConfig, build_student, get_family, model_input_shape
    from edgekd.targets import load_target

    spec = get_spec(task, data_dir)
    fam = get_family(family)
    params: dict[str, Any] = {}
    for item in filter(None, config_text.split(",")):
        key, sep, value = (part.strip() for part in item.partition("="))
        if key not in fam.grid and key != "dropout":
            raise EdgekdError(f"--config: {family} has no parameter {key!r}; it has {', '.join(fam.grid)}")
        if not sep or not value:
            raise EdgekdError(f"--config: {item!r} needs a value, e.g. {key}={fam.grid.get(key, (0.1,))[-1]}")
        if value.lower() == "none" and None in fam.grid.get(key, ()):
            params[key] = None
            continue
        try:
            number = float(value) if key == "dropout" else int(value)
        except ValueError:
            raise EdgekdError(f"--config: {key}={value!r} is not a number") from None
        if (key == "dropout" and not 0 <= number < 1) or (key != "dropout" and number < 1):
            raise EdgekdError(f"--config: {key}={value} is out of range")
        params[key] = number
    for key, values in fam.grid.items():
        params.setdefault(key, values[0])
    try:
        model = build_student(StudentConfig(family, params), spec.input_shape, spec.num_classes)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise EdgekdError(f"--config: {family} cannot be built with {params}: {exc}") from None
    report = analyze(model, model_input_shape(model), dtype, channels_last_input=model.channels_last_input)
    latency = report.latency(load_target(target_name)) if target_name else None
    if as_json:
        _emit_json({"family": family, "config": params, "task": spec.name, "cost": report.to_dict(),
                    "latency": latency.to_dict() if latency else None})
        return
    click.echo(report.table())
    click.echo(f"params {report.params:,}  MACs {report.macs:,}  int8 weights {format_bytes(report.int8_weight_bytes)}"
               f"  .tflite ~{format_bytes(report.tflite_bytes)}")
    click.echo(f"arena: activations {format_bytes(report.activation_bytes)} + TFLite Micro overhead "
               f"{format_bytes(report.overhead_bytes)} = {format_bytes(report.arena_bytes)} (predicted)")
    if latency:
        click.echo(f"latency {latency.ms:.2f} ms (estimated; floor {latency.floor_ms:.3f} ms): {latency.method}")


# ------------------------------------------------------------------ teacher and distill

@main.command("teacher")
@_task_option
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

    record = train_teacher(task, out, epochs, seed, data_dir, limit, progress=not as_json)
    from edgekd.distill.train import is_main

    if not is_main():
        return
    if as_json:
        _emit_json({k: v for k, v in record.items() if k != "history"})
        return
    click.echo(f"teacher for {record['task']}: {record['param_count']:,} params, test accuracy "
               f"{record['test_accuracy']:.4f}, trained in {record['train_seconds']:.0f} s -> {record['path']}")


def _loss_args(items: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise EdgekdError(f"--loss-arg {item!r}: expected NAME=NUMBER, e.g. temperature=4") from None
        if not sep:
            raise EdgekdError(f"--loss-arg {item!r}: expected NAME=NUMBER, e.g. temperature=4")
    return out


@main.command("distill")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@_task_option
@click.option("--teacher", "teacher_ref", help="Teacher: edgekd teacher .pt, torch.export .pt2, or module:factory.")
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
@click.option("--baseline", is_flag=True, help="Also train the same student without a teacher.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--aug-seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Augmentation stream; fixed across seeds so cached teacher outputs are reused.")
@click.option("--limit", type=click.IntRange(min=1), help="Train on a stratified subset (smoke runs).")
@click.option("--family", "families", multiple=True, help="Only these student families (repeatable).")
@click.option("--no-int8-check", is_flag=True, help="Skip the int8 export + TFLite Micro re-check.")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def distill_cmd(target_name: str, task: str, data_dir: str | None, teacher_ref: str | None,
                teacher_weights: str | None, teacher_layer: str | None, out_dir: str, loss: str,
                loss_arg: tuple[str, ...], epochs: int, batch_size: int, lr: float, patience: int, qat: bool,
                qat_epochs: int, search: int, baseline: bool, resume: bool, seed: int, aug_seed: int,
                limit: int | None, families: tuple[str, ...], no_int8_check: bool, ram_budget: str | None,
                flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """Train the student planned for TARGET from a teacher; writes OUT/student.pt and OUT/distill.json."""
    from edgekd.distill import distill

    result = distill(target_name, task, teacher_ref, out_dir, loss=loss, epochs=epochs, qat=qat,
                     qat_epochs=qat_epochs, search=search, resume=resume, baseline=baseline, seed=seed,
                     aug_seed=aug_seed, data_dir=data_dir, limit=limit, teacher_weights=teacher_weights,
                     teacher_layer=teacher_layer, loss_args=_loss_args(loss_arg),
                     budgets={"ram": ram_budget, "flash": flash_budget, "latency": latency_budget},
                     families=list(families) or None, batch_size=batch_size, lr=lr, patience=patience,
                     verify_int8=not no_int8_check, progress=not as_json)
    from edgekd.distill.train import is_main

    if not is_main():  # under torchrun only rank 0 reports
        return
    if as_json:
        _emit_json(result)
    else:
        s = result["student"]
        click.echo(f"student {s['family']} {s['config']}: float {s['accuracy_float']:.4f}"
                   + (f", int8 {s['accuracy_int8']:.4f}" if s["accuracy_int8"] is not None else "")
                   + (f", no teacher {s['accuracy_no_teacher']:.4f}" if s["accuracy_no_teacher"] is not None else "")
                   + (f"; teacher {result['teacher']['test_accuracy']:.4f}" if result["teacher"].get("path") else ""))
        m = result["measured"] or result["predicted"]
        b = result["budgets"]
        click.echo(f"flash {format_bytes(m['flash_bytes'])} / {format_bytes(b['flash_bytes'])}, RAM "
                   f"{format_bytes(m['ram_bytes'])} / {format_bytes(b['ram_bytes'])} "
                   f"({'measured' if result['measured'] else 'predicted'}); fits: {result['fits']}")
        click.echo(f"wrote {out_dir}/student.pt and {out_dir}/distill.json")
    if not result["fits"]:
        sys.exit(1)


# ------------------------------------------------------------------ export / verify

def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


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

    result = export_student(target_name, student, out_dir, _csv(formats), _csv(precision), calib_size,
                            {"ram": ram_budget, "flash": flash_budget, "latency": latency_budget})
    if as_json:
        _emit_json(result)
        return
    for a in result["artifacts"]:
        d = a["details"]
        note = ""
        if a["format"] == "pte":
            dl = d["delegation"]
            note = (f"{dl['delegated_nodes']} nodes delegated to XNNPACK, {dl['non_delegated_nodes']} not"
                    + (f"; portable fallbacks: {', '.join(dl['portable_fallback_ops'])}"
                       if dl["portable_fallback_ops"] else ""))
        elif a["format"] == "tflite":
            note = ", ".join(f"{k} x{v}" for k, v in d["ops"].items())
        elif a["format"] == "c":
            note = f"+ {d['header']}, tensor arena {d['tensor_arena_bytes']:,} B"
        click.echo(f"{a['path']:<20} {a['precision']:<5} {format_bytes(a['bytes']):>10}  {note}")
    for w in result["calibration"]["warnings"]:
        click.echo(f"warning: calibration: {w}")
    click.echo(f"wrote {out_dir}/export.json ({result['calibration']['samples']} calibration samples)")


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


def echo_emulated(runs: list[dict[str, Any]]) -> None:
    """One line per emulated run: where, which kernels, accuracy, exactness vs the host, counted latency."""
    from edgekd.emulate import exactness

    click.echo(f"{'emulated artifact':<20} {'emulator':<26} {'kernels':<9} {'accuracy':>8} {'vs host':>14} "
               f"{'instr.':>8} {'counted':>9}")
    for r in runs:
        if not r["ok"]:
            click.echo(f"{r['path']:<20} {r['emulator']:<26} {r['kernels'] or '-':<9} FAILED: {r['error']}")
            continue
        exact = exactness(r)
        insns = f"{r['instructions'] / 1e6:.2f}M" if r["instructions"] else "-"
        ms = f"{r['counted_ms']:.2f} ms" if r["counted_ms"] is not None else "-"
        click.echo(f"{r['path']:<20} {r['emulator']:<26} {r['kernels'] or '-':<9} {100 * r['accuracy']:>7.2f}% "
                   f"{exact:>14} {insns:>8} {ms:>9}")


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
        _emit_json(result)
    else:
        n = result["samples"]
        click.echo(f"{result['target']}: {n['test']} of {n['of']} test samples; float student accuracy "
                   f"{100 * result['float']['accuracy']:.2f}%")
        click.echo(f"{'artifact':<20} {'runtime':<11} {'accuracy':>8} {'agree':>7} {'max err':>8} "
                   f"{'host ms':>8} {'arena':>9}")
        for r in result["runs"]:
            arena = r.get("arena_bytes") or r.get("planned_memory_bytes")
            click.echo(f"{r['artifact']:<20} {r['runtime']:<11} {100 * r['accuracy']:>7.2f}% "
                       f"{100 * r['agreement_with_float']:>6.2f}% {r['max_abs_err']:>8.3f} "
                       f"{r['latency']['median_ms']:>8.3f} {format_bytes(arena) if arena else '-':>9}")
        if result["layers"]:
            worst = min(result["layers"], key=lambda r: r["sqnr_db"])
            click.echo(f"per-layer int8 error: worst {worst['index']}: {worst['op']} {worst['name']} "
                       f"{worst['sqnr_db']:.1f} dB SQNR (plot: {build_dir}/{result['layers_plot']})")
        if result["emulated"]:
            echo_emulated(result["emulated"])
        for name, g in result["gates"].items():
            if g is not None:
                click.echo(f"gate {name:<8} {'PASS' if g['passed'] else 'FAIL'}  {g['detail']} ({g['kind']})")
        click.echo(f"wrote {build_dir}/verify.json")
    if not result["passed"]:
        sys.exit(1)


@main.command("codegen")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the C sources.")
@click.option("--target", "target_name", help="Also link the firmware into this microcontroller's budgets.")
@click.option("--check", default=64, show_default=True, type=click.IntRange(min=0),
              help="Random int8 inputs compared byte for byte with TFLite Micro (0 = no check).")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def codegen_cmd(model: str, out_dir: str, target_name: str | None, check: int, ram_budget: str | None,
                flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """Generate C99 inference code (model.h: edgekd_invoke) from a fully-integer int8 .tflite; exit 1 when it
    does not match TFLite Micro."""
    from edgekd.codegen import codegen_model

    if not Path(model).is_file():
        raise EdgekdError(f"{model}: no such file; give a fully-integer int8 .tflite (edgekd export writes one)")
    target = load_target_with_budgets(target_name, ram_budget, flash_budget, latency_budget) if target_name else None
    result = codegen_model(model, out_dir, target, check)
    if as_json:
        _emit_json(result)
    else:
        click.echo(f"wrote {out_dir}/: {', '.join(result['files'])}")
        click.echo(f"{len(result['ops'])} operators, {result['macs']:,} MACs; constants {result['const_bytes']:,} B "
                   f"(flash); activation arena {result['arena_bytes']:,} B vs TFLite Micro's minimum arena "
                   f"{result['tflm_arena_bytes']:,} B ({result['arena_vs_tflm']:.2f}x)")
        c = result["check"]
        if c:
            click.echo(f"host gcc vs TFLite Micro on {c['samples']} random inputs: "
                       + ("bit-exact" if c["bit_exact_vs_tflm"] else f"{c['mismatched_outputs']} bytes differ"))
        b = result["board"]
        if b:
            click.echo(f"{b['target']} ({b['core']}): {b['elf']}: flash {b['flash_bytes']:,} of "
                       f"{b['flash_budget_bytes']:,} B, RAM {b['ram_bytes']:,} of {b['ram_budget_bytes']:,} B "
                       f"(data + bss + {b['stack_reserved_bytes']:,} B stack)")
    if result["check"] and not result["check"]["bit_exact_vs_tflm"]:
        sys.exit(1)


# ------------------------------------------------------------------ build

@main.command("build")
@click.option("--target", "target_name", help="Target name or path to a YAML profile.")
@click.option("--targets", "targets_csv", help="Several targets, comma-separated, sharing one teacher.")
@click.option("--all", "all_targets", is_flag=True, help="Every known target.")
@_task_option
@click.option("--data", "data_path", type=click.Path(), help="Your data (.npz or image folder) instead of --task.")
@click.option("--teacher", "teacher_ref", help="Teacher (.pt, .pt2); default: train the task's built-in one.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Build folder [default: builds/TARGET, or builds/ with one sub-folder per target].")
@click.option("--fast", is_flag=True, help="Smoke build: few epochs, a sample of the data (~2 min on digits).")
@click.option("--loss", default="kd", show_default=True, help="kd | dkd | dist | feature | ce (no teacher).")
@click.option("--epochs", type=click.IntRange(min=1), help="Distillation epochs [default: 20, --fast: 6].")
@click.option("--qat", is_flag=True, help="Quantization-aware fine-tuning.")
@click.option("--search", default=0, show_default=True, type=click.IntRange(min=0),
              help="Try the planner's top N candidates with short runs.")
@click.option("--baseline", is_flag=True, help="Also train the student without a teacher.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--family", "families", multiple=True, help="Only these student families (repeatable).")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False),
              help="Sign the bundle with this Ed25519 private key (edgekd keygen).")
@click.option("--max-drop", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Largest int8 accuracy drop vs float, percentage points.")
@emulator_options(["auto", "qemu", "none"], "auto")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def build_cmd(target_name: str | None, targets_csv: str | None, all_targets: bool, task: str, data_dir: str | None,
              data_path: str | None, teacher_ref: str | None, out_dir: str | None, fast: bool, loss: str,
              epochs: int | None, qat: bool, search: int, baseline: bool, seed: int, families: tuple[str, ...],
              sign_key: str | None, max_drop: float, emulator: str, emulator_limit: int, emulator_timeout: float,
              ram_budget: str | None, flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """plan -> teacher -> distill -> export -> verify -> package; unchanged stages are skipped. Exit 1 on a gate."""
    from edgekd.build import BuildOptions, build
    from edgekd.targets import load_all

    chosen = [t.name for t in load_all()] if all_targets else _csv(targets_csv) or ([target_name] if target_name
                                                                                       else [])
    if not chosen:
        raise EdgekdError("name what to build: --target NAME, --targets a,b,c or --all")
    opts = BuildOptions(task=data_path or task, data_dir=data_dir, teacher=teacher_ref, fast=fast, loss=loss,
                        epochs=epochs, seed=seed, qat=qat, search=search, baseline=baseline,
                        families=list(families) or None, max_drop_pp=max_drop, progress=not as_json,
                        budgets={"ram": ram_budget, "flash": flash_budget, "latency": latency_budget},
                        emulator=emulator, emulator_limit=emulator_limit or None, emulator_timeout_s=emulator_timeout,
                        sign=sign_key)
    if out_dir is None and len(chosen) == 1:  # builds/<profile name>, also for --target path/to/board.yaml
        from edgekd.targets import load_target

        out_dir = f"builds/{load_target(chosen[0]).name}"
    out = out_dir or "builds"
    result = build(chosen, opts, out)
    if as_json:
        _emit_json(result)
    else:
        for r in result["reports"]:
            where = out if len(chosen) == 1 else f"{out}/{r['target']}"
            s = r["student"]
            click.echo(f"{r['target']}: {'PASS' if r['passed'] else 'FAIL'}  {s['family']} {s['config']} float "
                       f"{100 * s['accuracy_float']:.2f}%, "
                       + ", ".join(f"{a['path'].split('/')[-1]} on {a['runtime']} {100 * a['accuracy']:.2f}%"
                                   for a in r["artifacts"] if a["accuracy"] is not None and a["format"] != "c"
                                   and not a.get("emulator")))
            emulated = [a for a in r["artifacts"] if a.get("emulator")]
            if emulated:
                int8 = [a for a in emulated if a["precision"] == "int8"]
                exact = sum(a["bit_exact_vs_host"] is True for a in int8)
                failed = sum(not a["ok"] for a in emulated)
                counted = [a["latency_ms"] for a in emulated if a["latency_kind"] == "counted"
                           and a["kernels"] != "reference"]  # what the device runs, as the latency gate
                click.echo(f"  emulated on {emulated[0]['emulator']}: {len(emulated)} runs"
                           + (f", {failed} FAILED" if failed else "")
                           + f", {exact} of {len(int8)} int8 runs bit-exact with the host"
                           + (f", counted latency up to {max(counted):.2f} ms" if counted else ""))
            failed = [k for k, g in r["gates"].items() if g and not g["passed"]]
            if failed:
                click.echo(f"  failed gates: {', '.join(failed)}")
            click.echo(f"  report: {where}/report.md (+ report.json), bundle: {where}/{r['bundle']}"
                       + (f"; skipped unchanged stages: {', '.join(r['skipped_stages'])}" if r["skipped_stages"]
                          else ""))
    if not all(r["passed"] for r in result["reports"]):
        sys.exit(1)


# ------------------------------------------------------------------ latency

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
    if as_json:
        _emit_json(report.to_dict())
    else:
        click.echo(f"{report.model} on {report.target}: {report.ms:.3f} ms ({report.kind}) of a "
                   f"{report.budget_ms:g} ms budget: {'PASS' if report.passed else 'FAIL'}")
        click.echo(f"  {report.method}")
    if not report.passed:
        sys.exit(1)


# ------------------------------------------------------------------ package

class _DefaultGroup(click.Group):
    """``edgekd package BUILD_DIR ...`` creates a bundle; ``edgekd package verify FILE`` checks one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


@main.group("package", cls=_DefaultGroup)
def package_group() -> None:
    """Bundle a verified build (edgekd package BUILD_DIR --out F.tar.gz) or check a bundle (package verify F)."""


@package_group.command("create", hidden=True)
@click.argument("build_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="Bundle to write (.tar.gz).")
@click.option("--vectors", default=16, show_default=True, type=click.IntRange(min=1),
              help="Verification vectors (test inputs with expected outputs).")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False),
              help="Ed25519 private key (from edgekd keygen): adds manifest.sig over manifest.json.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def package_create(build_dir: str, out_file: str, vectors: int, sign_key: str | None, as_json: bool) -> None:
    from edgekd.package import package_build

    manifest = package_build(build_dir, out_file, vectors, sign=sign_key)
    signature = manifest.get("signature")
    if as_json:
        _emit_json({"bundle": out_file, "manifest": manifest, "signed": signature is not None})
        return
    files = len(manifest["files"]) + 1 + (signature is not None)
    click.echo(f"wrote {out_file}: {files} files, {manifest['vectors']['count']} "
               f"verification vectors, gates passed: {manifest['measured']['passed']}")
    if signature is not None:
        click.echo(f"  signed with {sign_key} (ed25519, public key sha256 {signature['public_key_sha256']}); "
                   "check with `edgekd package verify BUNDLE --key KEY.pub`")


@package_group.command("verify")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--no-rerun", is_flag=True, help="Only check checksums, do not rerun the vectors.")
@click.option("--key", "key", type=click.Path(dir_okay=False),
              help="Ed25519 public key (KEY.pub): the bundle must carry a valid signature by its private key.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def package_verify(bundle: str, no_rerun: bool, key: str | None, as_json: bool) -> None:
    """Check the signature (--key), every checksum and rerun the verification vectors; exit 1 when a vector
    differs. Nothing from the bundle is executed: its C is regenerated by edgekd and only that copy runs."""
    from edgekd.package import verify_package

    result = verify_package(bundle, rerun=not no_rerun, key=key)
    if as_json:
        _emit_json(result)
    else:
        click.echo(f"{bundle}: {result['files']} files, checksums ok")
        click.echo(f"  signature: {result['signature']}")
        if "c_sources" in result:
            click.echo(f"  C sources: {len(result['c_sources']['compared'])} files byte-identical with the C edgekd "
                       "regenerates from the bundle's int8 .tflite")
        for c in result["vectors"]:
            click.echo(f"  {c['artifact']:<20} {c['runtime']:<17} max diff {c['max_diff']} {c['unit']}: "
                       f"{'ok' if c['passed'] else 'MISMATCH'}")
    if not result["passed"]:
        sys.exit(1)


# ------------------------------------------------------------------ keygen

@main.command("keygen")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Private key to write (PEM, mode 0600); the public key goes to OUT.pub.")
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def keygen_cmd(out_file: str, force: bool, as_json: bool) -> None:
    """Make an Ed25519 key pair for signing bundles (edgekd package ... --sign KEY)."""
    from edgekd.signing import keygen

    result = keygen(out_file, force=force)
    if as_json:
        _emit_json(result)
        return
    click.echo(f"wrote {result['private_key']} (private, keep it secret) and {result['public_key']} (give it to "
               f"whoever checks bundles); public key sha256 {result['public_key_sha256']}")


if __name__ == "__main__":
    main()
