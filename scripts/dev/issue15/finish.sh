#!/bin/bash
# Issue 15, after scripts/dev/issue15/device.sh ran on the GPU machine: unpack what came back (FILES_AT: the
# folder the device tool put $OUT's files in), measure int8 here (LiteRT reference kernels, TFLite Micro arena)
# and write the tables. Usage: scripts/dev/issue15/finish.sh FILES_AT
set -eu
cd /work/main
AT=$1
tar -xf "$AT/dev15.tar"
for f in "$AT"/ckpt-*.tar; do [ -f "$f" ] && tar -xf "$f"; done
cp "$AT"/teacher-*.pt runs/dev15/dev/ 2>/dev/null || true
W=runs/dev15/dev
TEACHER=$(python3 -c "
import json, pathlib
row = json.loads(next(pathlib.Path('$W').glob('kd-t4-s*.json')).read_text())['runs']['nrf52840-dk'][0]
print(json.loads((pathlib.Path(row['run_dir']) / 'distill.json').read_text())['teacher']['path'])")
echo "teacher: $TEACHER"
export OMP_NUM_THREADS=1
B="nice -n 10 .venv/bin/python scripts/bench_distill.py --task fashion-mnist --targets nrf52840-dk --epochs 30
  --student dscnn:depth=6,width=48 --report-only --measure-int8 --teacher $TEACHER"
m() { for f in "$@"; do [ -f "$f" ] && printf -- "--merge %s " "$f"; done; }
$B --losses ce,kd $(m $W/ce-s?.json $W/kd-t4-s?.json) --out docs/bench_distill_full30_strong.json \
  --section distill-full30-strong
$B --losses kd $(m $W/kd-t1-s?.json) --loss-arg temperature=1 --reuse-ce docs/bench_distill_full30_strong.json \
  --out docs/bench_distill_full30_strong_t1.json --section distill-full30-strong-t1
if ls $W/kdmix-t1-s?.json >/dev/null 2>&1; then
  $B --losses kd+mixup $(m $W/kdmix-t1-s?.json) --loss-arg temperature=1 \
    --reuse-ce docs/bench_distill_full30_strong.json --out docs/bench_distill_full30_strong_mix_t1.json \
    --section distill-full30-strong-mix-t1
fi
