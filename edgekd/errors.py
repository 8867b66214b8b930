"""How edgekd fails: bad input is one line and exit 2; a bug is one line, exit 3 and a log with the traceback.

``EdgekdError`` is for problems with what the user gave us (a file, a flag, a budget): its message names the
thing and says what to do. Anything else that escapes a verb is edgekd's fault: :func:`internal_error` writes
the traceback to a log file and returns the one line that points to it, so a user never has to read a traceback
to know what happened, and a bug report has all the details.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
import traceback
from pathlib import Path

#: Exit codes (README "Command line"): 1 is reserved for a failed budget, gate or vector check.
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class EdgekdError(Exception):
    """A problem with what the user gave us (a file, a flag, a budget); the message says what to do."""

    exit_code = EXIT_BAD_INPUT


# OS errors that are about the user's machine or paths, not edgekd: reported as bad input (exit 2).
_ENVIRONMENT_ERRNOS = {errno.ENOSPC: "the disk is full; free space or choose another --out",
                       errno.EROFS: "the file system is read-only; choose a writable --out",
                       errno.EACCES: "permission denied; choose a path you can write",
                       errno.EDQUOT: "the disk quota is exceeded; free space or choose another --out",
                       errno.EFBIG: "the file is larger than this file system or `ulimit -f` allows; free space or "
                                    "choose another --out",
                       errno.ENOTDIR: "a file is in the way of a folder on this path; choose another path",
                       errno.ENAMETOOLONG: "the path is too long",
                       errno.EMFILE: "too many open files; raise `ulimit -n`"}


def environment_error(exc: BaseException) -> EdgekdError | None:
    """An OSError caused by the machine (disk full, read-only, no permission) as a one-line EdgekdError."""
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        where = f"{exc.filename}: " if exc.filename else ""
        return EdgekdError(f"{where}{_ENVIRONMENT_ERRNOS[exc.errno]}")
    return None


def log_dir() -> Path:
    """Where internal-error logs go: $EDGEKD_LOG_DIR, else ~/.cache/edgekd/logs, else the temp folder."""
    if os.environ.get("EDGEKD_LOG_DIR"):
        return Path(os.environ["EDGEKD_LOG_DIR"])
    return Path.home() / ".cache" / "edgekd" / "logs"


def internal_error(exc: BaseException, argv: list[str]) -> str:
    """Write ``exc``'s traceback to a new log file; the one line to show the user, naming that file."""
    text = (f"edgekd {' '.join(argv)}\n{time.strftime('%Y-%m-%dT%H:%M:%S')}\n\n"
            + "".join(traceback.format_exception(exc)))
    name = f"edgekd-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            break
        except OSError:
            continue
    else:
        return f"internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); " \
               "re-run with -v for the traceback"
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return (f"internal error ({type(exc).__name__}{': ' + first if first else ''}), details in {path}; "
            "please report it")
