#!/usr/bin/env bash
# The main job on the embedded default task (digits): set up, list the targets, plan the students for a
# microcontroller and a Raspberry Pi, train the digits teacher, distil the microcontroller's student, export it
# (.tflite + C array) and verify it on LiteRT and TFLite Micro against the board's budgets.
# Results land in runs/quickstart/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
OUT="runs/quickstart"
mkdir -p "$OUT"
EDGEKD=.venv/bin/edgekd
$EDGEKD targets list
for target in nrf52840-dk raspberry-pi-4b; do
  echo
  echo "== edgekd plan --target $target --task digits"
  $EDGEKD plan --target "$target" --task digits --plot "$OUT/plan-$target.png"
  $EDGEKD plan --target "$target" --task digits --json > "$OUT/plan-$target.json"
done
echo
echo "== edgekd teacher --task digits"
[ -f "$OUT/teacher-digits.pt" ] || $EDGEKD teacher --task digits --out "$OUT/teacher-digits.pt"
echo
echo "== edgekd distill --target nrf52840-dk --task digits (KD, with a no-teacher baseline)"
$EDGEKD distill --target nrf52840-dk --task digits --teacher "$OUT/teacher-digits.pt" --out "$OUT/nrf52840-dk" \
  --epochs 20 --baseline
echo
echo "== edgekd export --target nrf52840-dk"
$EDGEKD export --target nrf52840-dk --student "$OUT/nrf52840-dk" --out "$OUT/build-nrf52840-dk"
echo
echo "== edgekd verify --target nrf52840-dk"
$EDGEKD verify --target nrf52840-dk "$OUT/build-nrf52840-dk"
echo
echo "plans: $OUT/plan-*.json (+ .png); student: $OUT/nrf52840-dk/student.pt, report: $OUT/nrf52840-dk/distill.json"
echo "build: $OUT/build-nrf52840-dk/ (model_int8.tflite, model_data.c/.h, export.json, verify.json, layers.png)"
