"""Running the `edgekd` command in-process and checking the error contract: exit 2, one stderr line."""

from __future__ import annotations

from click.testing import CliRunner

from edgekd.cli import main


def one_line_exit_2(args: list[str]) -> str:
    """Run ``edgekd ARGS``; it must exit 2 with exactly one stderr line starting "edgekd: error: " (returned)."""
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgekd: error: "), lines
    return lines[0]
