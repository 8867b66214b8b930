"""`edgekd search`: the most accurate students that fit a target, by successive halving on short distillations."""

from __future__ import annotations

import click

from edgekd.cli.shell import budget_options, finish, handle_errors, main, task_option


@main.command("search")
@click.option("--target", "target_name", required=True, help="Target name or path to a YAML profile.")
@task_option
@click.option("--out", "out_dir", default="search", show_default=True, type=click.Path(file_okay=False),
              help="Folder for frontier.json and frontier.png.")
@click.option("--trials", default=9, show_default=True, type=click.IntRange(min=1),
              help="Students trained in the first rung (today's planner pick is one of them).")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Start no new rung after this many minutes (the result then depends on machine speed).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--epochs", "max_epochs", default=9, show_default=True, type=click.IntRange(min=1),
              help="Epochs of the last rung.")
@click.option("--min-epochs", default=1, show_default=True, type=click.IntRange(min=1), help="Epochs of rung 0.")
@click.option("--eta", default=3, show_default=True, type=click.IntRange(min=2),
              help="Keep the best 1/ETA of each rung; the next trains ETA times longer.")
@click.option("--limit", default=3000, show_default=True, type=click.IntRange(min=0),
              help="Stratified training samples per trial (0: all).")
@click.option("--teacher", "teacher_ref", help="Distil trials from this teacher (else cross-entropy only).")
@click.option("--family", "families", multiple=True, help="Search these families (default: those with a space).")
@click.option("--pool", default=1, show_default=True, type=click.IntRange(min=1),
              help="Cost POOL x TRIALS fitting draws and train the largest by MACs (TinyNAS's prior; 1: uniform).")
@click.option("--space", "space_items", multiple=True,
              help="Narrow the search space: KEY=V1,V2 (repeatable), e.g. resolution=none,24.")
@click.option("--counted-latency", "counted_ms", type=click.FloatRange(min=0, min_open=True),
              help="Also count each fitting draw's generated C on the target's emulated core (untrained weights) "
                   "and keep draws at or under this many ms; --pool then keeps those nearest it.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Torch threads per trial.")
@click.option("--serial", is_flag=True, help="Run trials in this process instead of on Ray.")
@click.option("--scheduler", type=click.Choice(["sha", "asha"]), default="sha", show_default=True,
              help="sha: synchronous successive halving (same result serial or on Ray); asha: Ray Tune's "
                   "ASHAScheduler (no rung barrier; promotions depend on finish order).")
@click.option("--cluster", help="Ray cluster, e.g. ray://HOST:10001 or HOST:6379 [default: $RAY_ADDRESS, else a "
                                "local Ray instance].")
@budget_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def search_cmd(target_name: str, task: str, data_dir: str | None, out_dir: str, trials: int,
               budget_minutes: float | None, seed: int, max_epochs: int, min_epochs: int, eta: int, limit: int,
               teacher_ref: str | None, families: tuple[str, ...], pool: int, space_items: tuple[str, ...],
               counted_ms: float | None, threads: int, serial: bool,
               scheduler: str,
               cluster: str | None,
               ram_budget: str | None, flash_budget: str | None, latency_budget: str | None, as_json: bool) -> None:
    """Successive halving over fitting students; writes OUT/frontier.json (+ .png). `build --search OUT` uses it."""
    from edgekd.search import SearchSettings, search
    from edgekd.search_space import parse_space

    settings = SearchSettings(task=task, data_dir=data_dir, trials=trials, seed=seed, eta=eta, min_epochs=min_epochs,
                              max_epochs=max_epochs, limit=limit or None, families=list(families) or None,
                              teacher=teacher_ref, threads=threads, budget_minutes=budget_minutes, pool=pool,
                              space=parse_space(space_items), counted_latency_ms=counted_ms)
    result = search(target_name, settings, out_dir, "serial" if serial else "ray", cluster,
                    {"ram": ram_budget, "flash": flash_budget, "latency": latency_budget}, scheduler=scheduler)
    finish(result, as_json)
