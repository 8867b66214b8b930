"""Fit the Cortex-A cycle model's constants (edgekd/emulate/timing_a.py) on a few published XNNPACK figures.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/calibrate_cpi.py     # counts come from scripts/bench_cortex_a.py

Fits, in this order, and only on the rows marked "fit" in scripts/bench_cortex_a.py's PUBLISHED:
1. TAU_CYCLES, the serial cycles per operator on more than one thread: XNNPACK's README gives the Pixel 3a's
   MobileNet v1/v2/v3-Large/v3-Small fp32 times on 1 and 2 threads; with ``t2 = (t1 - S) / 2 + S``,
   ``S = 2 t2 - t1``; pooled over the four models, divided by their operators, at 2.0 GHz.
2. Per core, the float factor on MobileNet v1 fp32 and the integer factor on MobileNet v1 int8 (measured
   single-thread cycles / modelled cycles; a multi-thread publication is turned into single-thread time with
   step 1's model). The Cortex-A76 has no published int8 figure: its integer factor is its float factor times
   the A72's integer/float ratio.
Everything else in docs/bench_cortex_a.json is out of sample. Writes docs/cpi_calibration.json; timing_a's
FACTORS and TAU_CYCLES carry the rounded results (tests/test_aarch64.py keeps them equal).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_cortex_a import PIXEL3A, PUBLISHED, README, count  # noqa: E402

from edgekd.emulate import timing_a  # noqa: E402
from edgekd.io import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "edgekd" / "bench_cortex_a"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "cpi_calibration.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fit = [r for r in PUBLISHED if r[7].startswith("fit")]
    counts = {(m, p, c): count(work, m, p, c) for m, p, _, c, *_ in fit}

    pixel_rows = [r for r in PUBLISHED if r[3] == "cortex-a76" and r[2] == PIXEL3A]
    counts |= {(m, p, c): count(work, m, p, c) for m, p, _, c, *_ in pixel_rows}
    pixel = {(m, th): ms for m, p, _, c, _, th, ms, role in pixel_rows}
    serial_ms = sum(2 * pixel[(m, 2)] - pixel[(m, 1)] for m, th in pixel if th == 2)
    operators = sum(counts[(m, "fp32", "cortex-a76")]["ops"] for m, th in pixel if th == 2)
    tau = serial_ms * 1e-3 * 2000e6 / operators
    timing_a.TAU_CYCLES = round(tau, -2)

    factors: dict[str, dict[str, float]] = {}
    rows = []
    for m, p, device, cpu, mhz, th, ms, role in fit:
        if role != "fit":
            continue
        c = counts[(m, p, cpu)]
        serial = c["ops"] * timing_a.TAU_CYCLES / (mhz * 1e3) if th > 1 else 0.0
        single_ms = (ms - serial) * th + serial if th > 1 else ms
        table = timing_a.timing_for(cpu)
        modelled, busiest = table.modelled(c["classes"])
        factor = single_ms * mhz * 1e3 / modelled
        if p == "fp32":
            factors.setdefault(cpu, {})["float"] = round(factor, 3)
        else:  # int8 kernels still run some float (XNNPACK's fp32 requantization): solve the weighted mean
            fl = sum(c["classes"].get(k, 0) * sum(table.costs[k].values()) for k in timing_a.FLOAT_CLASSES)
            it = sum(c["classes"].get(k, 0) * sum(table.costs[k].values()) for k in timing_a.INTEGER_CLASSES)
            factors[cpu]["integer"] = round((factor * (fl + it) - fl * factors[cpu]["float"]) / it, 3)
        rows.append({"model": m, "precision": p, "device": device, "qemu_cpu": cpu, "clock_mhz": mhz,
                     "threads": th, "published_ms": ms, "single_thread_ms": round(single_ms, 2),
                     "modelled_cycles": round(modelled), "busiest_group": busiest, "factor": round(factor, 4),
                     "instructions": c["classes"]["total"], "operators": c["ops"]})
    ratio = factors["cortex-a72"]["integer"] / factors["cortex-a72"]["float"]
    factors["cortex-a76"]["integer"] = round(factors["cortex-a76"]["float"] * ratio, 3)
    doc = {"source": README,
           "method": "fit rows of scripts/bench_cortex_a.py (role fit / fit-threads): TAU from the Pixel 3a 1/2-thread "
                     "pairs, then per core factor = published single-thread cycles / modelled cycles",
           "tau_cycles_per_operator": timing_a.TAU_CYCLES, "tau_serial_ms_pooled": serial_ms,
           "tau_operators_pooled": operators, "factors": factors,
           "a76_integer_factor": f"cortex-a76 float factor x the A72's integer/float ratio ({ratio:.3f}); no "
                                 "published A76-class int8 figure to fit on",
           "fit_rows": rows}
    write_json(Path(args.out), doc)
    print(json.dumps({"tau": timing_a.TAU_CYCLES, "factors": factors}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
