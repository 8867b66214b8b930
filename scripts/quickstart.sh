#!/usr/bin/env bash
# The main job on the embedded default task (digits): set up, list the targets, and plan the student that
# fits a microcontroller and a Raspberry Pi. Results (JSON) land in runs/quickstart/.
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
  $EDGEKD plan --target "$target" --task digits
  $EDGEKD plan --target "$target" --task digits --json > "$OUT/plan-$target.json"
done
echo
echo "plans written to $OUT/plan-*.json"
