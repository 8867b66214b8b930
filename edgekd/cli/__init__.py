"""The ``edgekd`` command line. Thin: every verb calls one library function a Python user can call too, and
prints its typed result (``text()``, or ``--json``). One module per group of verbs; ``shell`` holds what they
share.

Exit codes: 0 success, 1 a budget or gate failed, 2 bad input (one line on stderr saying what to do), 3 an
internal error (one line naming the log with the traceback).
"""

from edgekd.cli import artifacts, design, pipeline, release, search, targets, train  # noqa: F401  (register the verbs)
from edgekd.cli.shell import main

__all__ = ["main"]
