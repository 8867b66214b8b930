"""Shared by the benchmark scripts: replace one marked section of docs/benchmarks.md with a fresh table."""

from __future__ import annotations

import os
from pathlib import Path

# Smoke runs (tests/test_scripts.py) point EDGEKD_BENCH_DOC elsewhere so they never touch the committed tables.
DOC = Path(os.environ.get("EDGEKD_BENCH_DOC") or Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md")


def replace_section(section: str, body: str, doc: Path = DOC) -> None:
    """Put ``body`` between ``<!-- section:start -->`` and ``<!-- section:end -->`` (appended when missing)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    doc.write_text(head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1])
