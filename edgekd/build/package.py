"""Stage ``package``: the verified build as one bundle, ``edgekd-<target>-<data>.tar.gz`` (signed with ``--sign``)."""

from __future__ import annotations

from pathlib import Path

from edgekd.build.context import BuildContext
from edgekd.build.stages import Stages
from edgekd.io import sha256_file


def run(ctx: BuildContext, stages: Stages) -> Path:
    """The bundle's path (written unless an identical one is there)."""
    from edgekd.package import package_build

    opts, layout = ctx.opts, ctx.layout
    bundle = layout.bundle(ctx.target.name, opts.data_label)
    stages.run("package", ctx.common_key | {"verify": sha256_file(layout.verify_json), "vectors": opts.vectors,
                                            "sign": sha256_file(opts.sign) if opts.sign else None}
               | stages.upstream_key("package"),
               [bundle], lambda: package_build(layout.artifacts, bundle, opts.vectors, sign=opts.sign))
    return bundle
