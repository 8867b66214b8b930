"""Shared by the benchmark scripts: replace one marked section of docs/benchmarks.md with a fresh table."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgekd.io import atomic_write_text  # noqa: E402

# Smoke runs (tests/test_scripts.py) point EDGEKD_BENCH_DOC elsewhere so they never touch the committed tables.
DOC = Path(os.environ.get("EDGEKD_BENCH_DOC") or Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md")


def replace_section(section: str, body: str, doc: Path = DOC) -> None:
    """Put ``body`` between ``<!-- section:start -->`` and ``<!-- section:end -->`` (appended when missing).

    Benchmarks run for hours and several may finish at once: the read-modify-write holds an exclusive lock (a
    file in the temp folder, named for the document) and the new text replaces the file in one rename, so no
    writer reads a half-written file or drops another's section."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    key = hashlib.sha256(str(doc.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"edgekd-benchdoc-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
        if start not in text:
            text += f"\n{start}\n{end}\n"
        head, rest = text.split(start, 1)
        atomic_write_text(doc, head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1])
