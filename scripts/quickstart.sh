#!/usr/bin/env bash
# The main job on the embedded default task (digits): set up, list the targets, show the plan for a
# microcontroller and a Raspberry Pi, then `edgekd build` both: one shared teacher, a distilled student per
# target (200 labels + the rest unlabelled, with a no-teacher twin), exported (.tflite + C array on the MCU;
# .tflite + .pte on the Pi),
# verified on LiteRT, TFLite Micro and ExecuTorch against each board's budgets, run on the boards' emulated
# cores (qemu-system-arm for the Cortex-M4, qemu-aarch64 for the Pi's Cortex-A72), and packaged.
# Results land in runs/quickstart/. A second run skips every unchanged stage.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/install_emulators.sh >/dev/null   # QEMU + Arm compilers (Debian); without root: builds skip emulation
fi
OUT="runs/quickstart"
mkdir -p "$OUT"
EDGEKD=.venv/bin/edgekd
$EDGEKD targets list
for target in nrf52840-dk raspberry-pi-4b; do
  echo
  echo "== edgekd plan --target $target --task digits"
  $EDGEKD plan --target "$target" --task digits
done
# The everyday edge situation distillation is for: a teacher that knows more than the user's labels (here the
# built-in teacher, trained on all 1,294 training labels, stands in for a model pretrained on more data), 200
# labelled samples and the other 1,094 as unlabelled recordings. --baseline also trains the student without a
# teacher (as many optimizer steps) and ships the better of the two on validation; report.md says which and why.
LABELS=200
echo
echo "== edgekd build --targets nrf52840-dk,raspberry-pi-4b --task digits --labels $LABELS --baseline"
status=0
$EDGEKD build --targets nrf52840-dk,raspberry-pi-4b --task digits --labels $LABELS --baseline --out "$OUT" || status=$?
echo
for target in nrf52840-dk raspberry-pi-4b; do
  echo "$target: report $OUT/$target/report.md (+ report.json), bundle $(ls "$OUT/$target"/edgekd-*.tar.gz)"
done
# What the teacher bought, honestly: the same student with and without it, over 3 seeds (int8 test accuracy).
echo
echo "== gain over the no-teacher twin, nrf52840-dk, $LABELS labels + the rest unlabelled, 3 seeds"
mkdir -p "$OUT/gain"
for seed in 0 1 2; do
  $EDGEKD distill --target nrf52840-dk --task digits --labels $LABELS --baseline --seed $seed \
    --teacher "$OUT/teacher/digits.pt" --out "$OUT/gain/seed$seed" --json > "$OUT/gain/seed$seed.json"
done
.venv/bin/python - "$OUT/gain" <<'PY'
import json, statistics, sys
from pathlib import Path
rows = [json.loads(p.read_text())["shipped"] for p in sorted(Path(sys.argv[1]).glob("seed*.json"))]
gain = [100 * (r["distilled"]["test_int8"] - r["no_teacher"]["test_int8"]) for r in rows]
kd = [100 * r["distilled"]["test_int8"] for r in rows]
ce = [100 * r["no_teacher"]["test_int8"] for r in rows]
print(f"distilled {statistics.fmean(kd):.2f} +- {statistics.stdev(kd):.2f} %, no teacher {statistics.fmean(ce):.2f} "
      f"+- {statistics.stdev(ce):.2f} % (int8, LiteRT reference kernels); gain {statistics.fmean(gain):+.2f} +- "
      f"{statistics.stdev(gain):.2f} pp over {len(rows)} seeds; shipped: {', '.join(r['shipped'] for r in rows)}")
PY
exit $status
