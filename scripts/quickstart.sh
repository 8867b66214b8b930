#!/usr/bin/env bash
# The main job on the embedded default task (digits): set up, list the targets, show the plan for a
# microcontroller and a Raspberry Pi, then `edgekd build` both: one shared teacher, a distilled student per
# target (with a no-teacher baseline), exported (.tflite + C array on the MCU; .tflite + .pte on the Pi),
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
echo
echo "== edgekd build --targets nrf52840-dk,raspberry-pi-4b --task digits --baseline"
status=0
$EDGEKD build --targets nrf52840-dk,raspberry-pi-4b --task digits --baseline --out "$OUT" || status=$?
echo
for target in nrf52840-dk raspberry-pi-4b; do
  echo "$target: report $OUT/$target/report.md (+ report.json), bundle $(ls "$OUT/$target"/edgekd-*.tar.gz)"
done
exit $status
