"""Stage ``teacher``: the teacher every target of a build shares, given (``--teacher``) or trained once."""

from __future__ import annotations

from edgekd.build import context
from edgekd.build.context import BuildLayout, BuildOptions, data_key
from edgekd.build.records import TeacherRecord
from edgekd.build.stages import Stages


def run(opts: BuildOptions, layout: BuildLayout, stages: Stages) -> TeacherRecord:
    """The given teacher, or the task's built-in one trained into ``layout``'s teacher folder (skipped when an
    identical one is there). ``opts`` are resolved options; ``layout`` may be the shared top folder."""
    from edgekd.distill import train_teacher

    if opts.teacher:
        return TeacherRecord(opts.teacher, trained=False)
    from edgekd.build.text import is_text
    from edgekd.data import get_spec

    spec = get_spec(opts.task, opts.data_dir)
    if is_text(spec):  # a pretrained encoder, nothing to train: the text path embeds each target's sentences
        from edgekd.text.task import text_recipe

        return TeacherRecord(text_recipe(spec).teacher, trained=False)
    path = layout.teacher_file(opts.task)
    stages.run("teacher", {"data": data_key(opts.task, opts.data_dir), "epochs": opts.teacher_epochs,
                           "limit": opts.limit, "seed": opts.seed, "code": context.code_hash()}, [path],
               lambda: train_teacher(opts.task, path, opts.teacher_epochs, opts.seed, opts.data_dir, opts.limit,
                                     progress=opts.progress), roots=[path.parent])
    return TeacherRecord(str(path), trained=True)
