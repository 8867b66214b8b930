"""scripts/benchdocs.py: benchmark scripts that finish at the same time each keep their section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITER = """
import sys
sys.path.insert(0, {scripts!r})
from pathlib import Path
from benchdocs import replace_section
for i in range(40):
    replace_section(f"{{sys.argv[1]}}{{i}}", f"| {{sys.argv[1]}} | {{i}} |\\n" * 20, Path(sys.argv[2]))
"""


def test_concurrent_writers_keep_every_section(tmp_path: Path):
    """Three processes add 40 sections each to one document at once: all 120 are there, each with its body."""
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written text\n")
    code = WRITER.format(scripts=str(ROOT / "scripts"))
    procs = [subprocess.Popen([sys.executable, "-c", code, name, str(doc)]) for name in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nhand-written text\n")
    for name in ("a", "b", "c"):
        for i in range(40):
            body = f"| {name} | {i} |\n" * 20
            assert f"<!-- {name}{i}:start -->\n{body}\n<!-- {name}{i}:end -->" in text, (name, i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.md"]  # no temporary file left
