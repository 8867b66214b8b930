"""Stage ``verify``: run every artifact on the host runtimes (and, with an emulator, on the emulated core) and
check the gates; writes artifacts/verify.json.

Emulation stays inside this stage: ``edgekd.verify.verify_build`` runs it on the same test sample and its
results feed the latency and emulator gates, so a separate stage would have to hand back half a verify record.
"""

from __future__ import annotations

from edgekd.build.context import BuildContext
from edgekd.build.records import read_verify
from edgekd.build.stages import Stages
from edgekd.io import sha256_file
from edgekd.verify.records import VerifyRecord


def run(ctx: BuildContext, stages: Stages) -> VerifyRecord:
    from edgekd.verify import verify_build

    opts, layout = ctx.opts, ctx.layout
    limit = opts.eval_limit
    stages.run("verify", ctx.common_key | {"export": sha256_file(layout.export_json), "limit": limit,
                                           "max_drop": opts.max_drop_pp, "emulator": ctx.emulator,
                                           "emulator_limit": opts.emulator_limit,
                                           "min_accuracy": opts.min_accuracy} | stages.upstream_key("verify"),
               [layout.verify_json],
               lambda: verify_build(ctx.target, layout.artifacts, opts.max_drop_pp, limit, budgets=opts.budgets,
                                    emulator=ctx.emulator, emulator_limit=opts.emulator_limit,
                                    emulator_timeout_s=opts.emulator_timeout_s, lock=False,
                                    min_accuracy=opts.min_accuracy),
               roots=[layout.artifacts])
    return read_verify(layout.artifacts, ctx.target.name)
