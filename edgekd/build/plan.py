"""Stage ``plan``: rank the candidate students for the target and write plan.json (+ plan.png).

With ``--student`` (the user's own) or ``--search frontier.json`` (an ``edgekd search`` result) the plan holds
that one student, costed and checked against the budgets and the operator set like any candidate, and refused
here, before any training, when it does not fit.
"""

from __future__ import annotations

from typing import Any

from edgekd.build.context import BuildContext
from edgekd.build.records import PlanRecord
from edgekd.build.stages import Stages
from edgekd.errors import EdgekdError
from edgekd.io import write_json

#: Candidates plan.json lists at least; a ``--search N`` wider than this lists N.
LISTED = 10


def named_student(ctx: BuildContext) -> Any:
    """The student the user named (``--student``) or searched (``--search frontier.json``), checked against the
    target (exit 2 for a missing operator, 1 for a missed budget); None when the planner chooses."""
    from edgekd.data import get_spec
    from edgekd.planner import check_student

    opts = ctx.opts
    if not opts.student and not opts.searched:
        return None
    if opts.student and opts.searched:
        raise EdgekdError("--student and --search FRONTIER both name the student; give one")
    if opts.search > 1:
        raise EdgekdError(f"--search {opts.search} tries the planner's top candidates; with --student or a search "
                          "result there is one student: drop one of them")
    spec = get_spec(opts.task, opts.data_dir)
    if opts.student:
        from edgekd.students.user import student_config

        config = student_config(opts.student, tuple(spec.input_shape), spec.num_classes)
    else:
        from edgekd.search import load_choice

        config = load_choice(opts.searched, ctx.target.name, spec.name)
    return check_student(config, ctx.target, spec)


def run(ctx: BuildContext, stages: Stages) -> PlanRecord:
    """The plan, from plan.json (planned now unless an identical plan is already there); refuses a plan in which
    no student fits, before any training."""
    from edgekd.data import get_spec
    from edgekd.planner import Plan, explain_no_fit, plan, plot_plan

    opts, layout = ctx.opts, ctx.layout
    listed = max(LISTED, opts.search)
    named = named_student(ctx)

    def do_plan() -> None:
        if named is not None:
            p = Plan(ctx.target.name, get_spec(opts.task, opts.data_dir).name, ctx.target.budgets.to_dict(), named,
                     [named], "fp32" if ctx.target.quantization == "fp32" else "int8")
        else:
            p = plan(ctx.target, get_spec(opts.task, opts.data_dir), opts.families)
        plot_plan(p, layout.plan_png)
        write_json(layout.plan_json, p.to_dict(runners_up=listed))

    stages.run("plan", {"target": ctx.profile, "data": ctx.data, "families": opts.families, "listed": listed,
                        "named": named.to_dict() if named is not None else None, "code": ctx.code},
               [layout.plan_json], do_plan, roots=[layout.plan_json, layout.plan_png])
    record = PlanRecord.read(layout.plan_json)
    if not record.fits:
        raise EdgekdError(explain_no_fit(plan(ctx.target, get_spec(opts.task, opts.data_dir), opts.families)))
    return record
