"""Stage ``plan``: rank the candidate students for the target and write plan.json (+ plan.png)."""

from __future__ import annotations

from edgekd.build.context import BuildContext
from edgekd.build.records import PlanRecord
from edgekd.build.stages import Stages
from edgekd.errors import EdgekdError
from edgekd.io import write_json

#: Candidates plan.json lists at least; a ``--search N`` wider than this lists N.
LISTED = 10


def run(ctx: BuildContext, stages: Stages) -> PlanRecord:
    """The plan, from plan.json (planned now unless an identical plan is already there); refuses a plan in which
    no student fits, before any training."""
    from edgekd.data import get_spec
    from edgekd.planner import explain_no_fit, plan, plot_plan

    opts, layout = ctx.opts, ctx.layout
    listed = max(LISTED, opts.search)

    def do_plan() -> None:
        p = plan(ctx.target, get_spec(opts.task, opts.data_dir), opts.families)
        plot_plan(p, layout.plan_png)
        write_json(layout.plan_json, p.to_dict(runners_up=listed))

    stages.run("plan", {"target": ctx.profile, "data": ctx.data, "families": opts.families, "listed": listed,
                        "code": ctx.code}, [layout.plan_json], do_plan, roots=[layout.plan_json, layout.plan_png])
    record = PlanRecord.read(layout.plan_json)
    if not record.fits:
        raise EdgekdError(explain_no_fit(plan(ctx.target, get_spec(opts.task, opts.data_dir), opts.families)))
    return record
