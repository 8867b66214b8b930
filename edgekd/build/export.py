"""Stage ``export``: the student's deployable files for the target, listed in artifacts/export.json."""

from __future__ import annotations

from edgekd.build.context import BuildContext
from edgekd.build.records import read_export
from edgekd.build.stages import Stages
from edgekd.export.records import ExportRecord
from edgekd.io import sha256_file


def run(ctx: BuildContext, stages: Stages) -> ExportRecord:
    """Export (skipped when the student and export.json's files are unchanged); every file it or verify after it
    writes under artifacts/ is recorded."""
    from edgekd.export import export_student

    layout = ctx.layout
    stages.run("export", ctx.common_key | {"student": sha256_file(layout.student_file)}
               | stages.upstream_key("export"), [layout.export_json],
               lambda: export_student(ctx.target, layout.student_dir, layout.artifacts, budgets=ctx.opts.budgets,
                                      lock=False),
               roots=[layout.artifacts])
    return read_export(layout.artifacts)
