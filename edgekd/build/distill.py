"""Stage ``distill``: train the plan's student from the teacher; writes student/student.pt and distill.json."""

from __future__ import annotations

from edgekd.build.context import BuildContext, data_key
from edgekd.build.records import DistillRecord, PlanRecord, TeacherRecord
from edgekd.build.stages import Stages
from edgekd.io import sha256_file


def run(ctx: BuildContext, stages: Stages, plan: PlanRecord, teacher: TeacherRecord,
        teacher_stages: Stages) -> DistillRecord:
    """Distil ``plan``'s student (its fitting candidates, for ``--search``) from ``teacher``; ``teacher_stages``
    holds the teacher's run token (the shared top folder's when several targets share it)."""
    from edgekd.distill import distill

    opts, layout = ctx.opts, ctx.layout
    key = {"target": ctx.profile, "data": ctx.data, "teacher": teacher.key, "loss": opts.loss,
           "epochs": opts.epochs, "seed": opts.seed, "qat": opts.qat, "search": opts.search,
           "baseline": opts.baseline, "limit": opts.limit, "families": opts.families, "code": ctx.code,
           "teacher_weights": sha256_file(opts.teacher_weights) if opts.teacher_weights else None,
           "allow_weak_teacher": opts.allow_weak_teacher, "labels": opts.labels,
           "unlabelled": data_key(opts.unlabelled, None) if opts.unlabelled else None, "mix": opts.mix,
           "views": opts.views}
    key |= stages.upstream_key("distill", teacher_stages if teacher.trained else None)
    if not teacher.trained:
        key["teacher_run"] = None
    stages.run("distill", key, [layout.student_file, layout.distill_json],
               lambda: distill(ctx.target, opts.task, teacher.ref, layout.student_dir, loss=opts.loss,
                               epochs=opts.epochs, qat=opts.qat, search=opts.search, baseline=opts.baseline,
                               seed=opts.seed, data_dir=opts.data_dir, limit=opts.limit, families=opts.families,
                               budgets=opts.budgets, verify_int8=False, progress=opts.progress,
                               planned=plan.fitting, teacher_weights=opts.teacher_weights,
                               labels=opts.labels, unlabelled=opts.unlabelled,
                               allow_weak_teacher=opts.allow_weak_teacher, mix=opts.mix, views=opts.views),
               roots=[layout.student_dir])
    return DistillRecord.read(layout.distill_json)
