"""scripts/validate_cycles_published.py: edgekd's Cortex-M4/M7/M55 cycle models on Dhrystone 2.1 against the
published cycles per loop, and the committed comparison (docs/cycle_validation_published.json)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import validate_cycles_published as vcp  # noqa: E402

from edgekd.errors import EdgekdError  # noqa: E402

COMMITTED = ROOT / "docs" / "cycle_validation_published.json"


def test_published_figures_are_cycles_per_dhrystone_loop() -> None:
    """DMIPS/MHz = 10^6 / (1757 x cycles per loop): Arm's 454-cycle M4 loop is its 1.25 DMIPS/MHz."""
    assert vcp.PUBLISHED["cortex-m4"].cycles == 454
    assert vcp.PUBLISHED["cortex-m4"].dmips_per_mhz == pytest.approx(1.2536, abs=1e-4)
    assert vcp.PUBLISHED["cortex-m7"].cycles == pytest.approx(265.95, abs=0.01)
    assert vcp.PUBLISHED["cortex-m55"].cycles == pytest.approx(355.72, abs=0.01)


def test_one_loop_is_the_difference_of_the_two_runs() -> None:
    before, short, long_, after = (5, 9, 0, 0), (1000, 1500, 40, 50), (21000, 31500, 840, 1050), (7, 8, 1, 1)
    assert vcp.per_loop([before, short, long_, after]) == (200.0, 300.0, 8.0, 10.0)
    with pytest.raises(EdgekdError, match="expected 4 phases"):
        vcp.per_loop([before, short, long_])


def test_the_committed_comparison_is_consistent() -> None:
    data = json.loads(COMMITTED.read_text())
    assert data["runs"] == list(vcp.RUNS)
    for row in data["dhrystone"]:
        pub = vcp.PUBLISHED[row["core"]]
        assert row["published_cycles_per_loop"] == round(pub.cycles, 1)
        assert row["difference_pct"] == round(100 * (row["model_cycles_per_loop"] - pub.cycles) / pub.cycles, 1)
        assert row["model_dmips_per_mhz"] == round(1e6 / (1757 * row["model_cycles_per_loop"]), 3)


def _dhrystone() -> Path:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed (scripts/install_emulators.sh)")
    libc = subprocess.run(["arm-none-eabi-gcc", "-print-file-name=libc_nano.a"], capture_output=True,
                          text=True).stdout.strip()
    if not Path(libc).is_file():
        pytest.skip("newlib is not installed: apt-get install libnewlib-arm-none-eabi (.ci/run installs it)")
    src = vcp.dhrystone_sources()
    if src is None:
        pytest.skip(f"Dhrystone's source is not installed: apt-get install {vcp.DHRY_PACKAGE} (.ci/run installs it)")
    return src


@pytest.mark.slow
@pytest.mark.emulator
def test_dhrystone_on_the_cycle_models_reproduces_the_committed_comparison() -> None:
    """Build Dhrystone for the M4, M7 and M55, count one loop (unicorn + timing_m, QEMU + timing_m55): the same
    figures as committed, the M4 within 10% of Arm's 454 cycles, and the M55's excess in its taken-branch refills."""
    rows = vcp.measure(_dhrystone())
    committed = json.loads(COMMITTED.read_text())["dhrystone"]
    keys = ("core", "instructions_per_loop", "model_cycles_per_loop", "taken_branches_per_loop",
            "refill_cycles_per_loop")
    assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in committed]
    by = {r["core"]: r for r in rows}
    assert abs(by["cortex-m4"]["difference_pct"]) < 10
    assert abs(by["cortex-m7"]["difference_pct"]) < 20
    m55 = by["cortex-m55"]
    assert m55["refill_cycles_per_loop"] == 3 * m55["taken_branches_per_loop"]
    blocks = m55["model_cycles_per_loop"] - m55["refill_cycles_per_loop"]
    assert abs(blocks - vcp.PUBLISHED["cortex-m55"].cycles) / vcp.PUBLISHED["cortex-m55"].cycles < 0.05
