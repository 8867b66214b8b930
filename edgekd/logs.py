"""Logging and progress helpers: concise logs, and silence for native libraries that print to fd 1/2."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

log = logging.getLogger("edgekd")
#: Set by ``edgekd -v``: debug logs, and the traceback of an internal error printed as well as logged.
VERBOSE = False


def setup(verbose: bool = False) -> None:
    global VERBOSE
    VERBOSE = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("torchao", "torch._export", "torch.export", "torch.utils._pytree", "absl", "litert_torch", "jax"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="torchao")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


@contextlib.contextmanager
def native_quiet() -> Iterator[None]:
    """Capture what C++ code (converters, TF logging) writes to stdout/stderr; replay it only on error."""
    if os.environ.get("EDGEKD_VERBOSE"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sink.seek(0)
            tail = sink.read()[-4000:].decode(errors="replace")
            if tail.strip():
                log.debug("native output before the error:\n%s", tail)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
