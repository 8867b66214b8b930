#!/bin/bash
# Issue 15 on the GPU machine: a strong Fashion-MNIST teacher, then the full-label 30-epoch students
# (pinned dscnn(d6,w48), 3 seeds: no teacher; KD T=4; KD T=1; KD T=1 + mixup if time allows). Float only here
# (--no-int8); int8 is measured afterwards on the CPU machine (bench_distill.py --measure-int8).
# Usage (repo root): scripts/dev/issue15/device.sh [SCALE]   SCALE=tiny: a CPU smoke test of every step.
# On the device (the run tool): command 'bash scripts/dev/issue15/device.sh full', carry [".devdata"]
# (.devdata/fashion-mnist: a copy of /usr/share/datasets/fashion-mnist, ignored by .git/info/exclude),
# timeout_s 540. Then, here: scripts/dev/issue15/finish.sh FILES_AT.
# CPU smoke test: OUT=/tmp/dev15-out EDGEKD_CACHE=/tmp/dev15-cache PY="nice -n 10 env PYTHONPATH=/tmp/dev15-block
#   .venv/bin/python" scripts/dev/issue15/device.sh tiny   (/tmp/dev15-block/sitecustomize.py, a copy of block_sitecustomize.py, hides the packages the
#   GPU machine lacks: ai_edge_litert, litert_torch, executorch, torchao, tflite_micro, pyts, ...)
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
SCALE=${1:-full}
START=$(date +%s)
el() { echo $(( $(date +%s) - START )); }
OUT=${OUT:-/tmp/dev15-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device.log") 2>&1
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 EDGEKD_CACHE=${EDGEKD_CACHE:-/tmp/edgekd-cache}
PY=${PY:-python3}
G="$PY scripts/dev/issue15/gpu.py"
W=runs/dev15/dev
mkdir -p $W/runs

if [ "$SCALE" = tiny ]; then
  EPOCHS=1; TEPOCHS=10; LIMIT="--limit 600"; TDEAD=400; HARD=900; DRAWS=1; export DEV15_LIMIT=600
else
  EPOCHS=30; TEPOCHS=30; LIMIT=""; TDEAD=270; HARD=515; DRAWS=30
  if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    mkdir -p /usr/share/datasets && cp -r .devdata/fashion-mnist /usr/share/datasets/
  fi
  nvidia-smi -L
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
echo "[$(el)s] start, scale $SCALE"

PIDS=()
launch() {  # launch NAME CMD...: background job, log in $W/NAME.log
  local name=$1; shift
  "$@" > "$W/$name.log" 2>&1 &
  PIDS+=($!)
  echo "[$(el)s] launched $name (pid $!)"
}
BENCH="bench --task fashion-mnist --targets nrf52840-dk --epochs $EPOCHS --student dscnn:depth=6,width=48 \
  --runs-dir $W/runs --no-int8 $LIMIT"

# Phase 1: two teachers (the recipe's resnet-teacher w32 b1, and w64 b2), 30 epochs, no label smoothing; the
# no-teacher students need no teacher, so they train meanwhile.
if [ "$SCALE" = tiny ]; then
  launch teacher-a $G teacher $W/teacher-a.pt $TEPOCHS 8 1
  TA=$!; TBP=""; TB=""
else
  launch teacher-a $G teacher $W/teacher-a.pt $TEPOCHS 32 1
  TA=$!
  launch teacher-b $G teacher $W/teacher-b.pt $TEPOCHS 64 2
  TBP=$!; TB=teacher-b
fi
for s in 0 1 2; do launch ce-s$s $G $BENCH --losses ce --seeds $s --out $W/ce-s$s.json; done

# Wait for the teachers: both, or at TDEAD the better finished one by validation accuracy.
while :; do
  n=0; for t in teacher-a $TB; do [ -f $W/$t.pt.json ] && n=$((n+1)); done
  want=$([ -n "$TB" ] && echo 2 || echo 1)
  [ $n -ge $want ] && break
  if [ $(el) -ge $TDEAD ] && [ $n -ge 1 ]; then echo "[$(el)s] teacher deadline: using what finished"; break; fi
  if [ $(el) -ge $HARD ]; then echo "[$(el)s] no teacher finished"; break; fi
  sleep 3
done
TEACHER=$($PY - <<EOF
import json, pathlib
best = None
for t in ["teacher-a", "teacher-b"]:
    p = pathlib.Path("$W") / f"{t}.pt.json"
    if p.is_file():
        r = json.loads(p.read_text())
        print(f"# {t}: val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f} {r['train_seconds']:.0f} s",
              flush=True)
        if best is None or r["val_accuracy"] > best[0]:
            best = (r["val_accuracy"], str(p)[:-5])
print(best[1] if best else "")
EOF
)
echo "$TEACHER" | grep '^#'
TEACHER=$(echo "$TEACHER" | grep -v '^#')
echo "[$(el)s] teacher chosen (best validation): $TEACHER"
kill $TA $TBP 2>/dev/null  # a teacher still training past the deadline

if [ -n "$TEACHER" ]; then
  # Phase 2: the teacher's outputs on every augmentation draw the students use (one per epoch), in parallel.
  MIXUP=0; [ $(el) -le 200 ] && MIXUP=1
  [ "$SCALE" = tiny ] && MIXUP=1
  PRE=()
  for part in 0 1 2 3 4; do
    d=$(seq $part 5 $((DRAWS-1)) | tr '\n' ' ')
    [ -n "$d" ] || continue
    $G precompute $TEACHER none $d > $W/pre-none-$part.log 2>&1 & PRE+=($!)
    if [ $MIXUP = 1 ]; then $G precompute $TEACHER mixup $d > $W/pre-mixup-$part.log 2>&1 & PRE+=($!); fi
  done
  wait "${PRE[@]}"
  cat $W/pre-*.log | grep -v "^I0000\|WARNING: All log" | tail -12
  echo "[$(el)s] teacher outputs cached (mixup arm: $MIXUP)"
  # Phase 3: the distilled students.
  for s in 0 1 2; do
    launch kd-t4-s$s $G $BENCH --losses kd --seeds $s --teacher $TEACHER --out $W/kd-t4-s$s.json \
      --runs-dir $W/runs-t4
    launch kd-t1-s$s $G $BENCH --losses kd --seeds $s --teacher $TEACHER --out $W/kd-t1-s$s.json \
      --runs-dir $W/runs-t1 --loss-arg temperature=1
    if [ $MIXUP = 1 ]; then
      launch kdmix-t1-s$s $G $BENCH --losses kd+mixup --seeds $s --teacher $TEACHER --out $W/kdmix-t1-s$s.json \
        --runs-dir $W/runs-mix-t1 --loss-arg temperature=1
    fi
  done
fi

# Wait for everything, up to the hard deadline; then stop what is left (its checkpoint.pt allows --resume).
while [ -n "$(jobs -rp)" ] && [ $(el) -lt $HARD ]; do sleep 3; done
if [ -n "$(jobs -rp)" ]; then
  echo "[$(el)s] hard deadline: stopping $(jobs -rp | wc -l) unfinished job(s)"
  kill $(jobs -rp) 2>/dev/null
  sleep 2
fi
echo "[$(el)s] progress per job (last epoch line):"
for f in $W/*.log; do echo "  $(basename $f): $(grep -o 'epoch [0-9]*/[0-9]*.*val acc [0-9.]*' $f | tail -1)"; done
grep -h "float .* int8" $W/*.log
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
for t in teacher-a teacher-b; do [ -f $W/$t.pt ] && cp $W/$t.pt "$OUT/"; done
# Finished runs come back without checkpoint.pt (student.pt is what they ship); unfinished ones with it (--resume).
tar -cf "$OUT/dev15.tar" --exclude='*.tflite' --exclude='teacher-*.pt' --exclude=checkpoint.pt $W
for arm in runs runs-t4 runs-t1 runs-mix-t1; do
  left=$(for d in $W/$arm/*/*/; do [ -f $d/checkpoint.pt ] && [ ! -f $d/student.pt ] && echo $d/checkpoint.pt; done)
  [ -n "$left" ] && tar -cf "$OUT/ckpt-$arm.tar" $left
done
ls -la "$OUT"
echo "[$(el)s] done"
sleep 1  # let tee write the log
