#!/usr/bin/env bash
# The GPU acceptance check of the losses and the framework, in one go (under 8 minutes on one
# H100/H200):
#   1. bench      bench_losses.py on the device against smp and CE/BCE, every case, with
#                 5. peak memory against smp (in the same table), with the Triton kernels
#                 (LOVASZSEG_TRITON=1) and without (the default until they measure faster)
#   2. parity     the device's loss and gradient against the CPU kernel's, every mode
#   3. sync       no host sync in the losses' forward+backward with checks="async"
#   4. train      the main job on the GPU in bf16-mixed for a few epochs, then with compile=true;
#      step       the step time with lovasz_hinge_bce against bce alone (B=8, 512²);
#      predict    predict and export with the trained checkpoint
# Each part runs under its own time limit and reports pass or fail; a failing part does not stop
# the others. Results go to benchmarks/results/*_cuda.json (with the device's name), the logs and
# the summary to $GPU_CHECK_DIR (default: a new temporary folder).
#
#   bash benchmarks/gpu_check.sh                  # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu     # dry run: tiny sizes, results in $GPU_CHECK_DIR
#   GPU_CHECK_ONLY="train step" bash benchmarks/gpu_check.sh   # only these parts (a rerun)
set -uo pipefail
cd "$(dirname "$0")/.."
device=cuda
if [ "${1:-}" = "--device" ]; then
  device=${2:?"--device needs a value: cuda or cpu"}
elif [ -n "${1:-}" ]; then
  echo "gpu_check: unknown argument '$1' (expected --device cuda|cpu)" >&2
  exit 2
fi
python=${LOVASZSEG_VENV:-.venv}/bin/python
work=${GPU_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-XXXXXX")}
mkdir -p "$work"
export NO_ALBUMENTATIONS_UPDATE=1 WANDB_MODE=disabled
if [ "$device" = cuda ]; then
  scale=1
  results=benchmarks/results
  bench=(--device cuda --processes 2 --rounds 5)
  parity=(--size 64)
  step=(--batch 8 --size 512 --steps 20 --warmup 5)
  train=(trainer=gpu trainer.precision=bf16-mixed trainer.max_epochs=3)
  compiled=(trainer=gpu trainer.precision=bf16-mixed trainer.max_epochs=2 compile=true)
else  # the dry run: every part on tiny sizes, so that the script is known to start and finish
  scale=${GPU_CHECK_TIME_SCALE:-4}  # a CPU shared with other jobs: the time limits, scaled
  results=$work/results
  bench=(--device cpu --quick --only "thin_roads batch" --processes 1 --rounds 1 --no-memory)
  parity=(--size 12 --batch 2)
  step=(--batch 2 --size 64 --steps 1 --warmup 1 --model deeplabv3plus_mobilenetv2)
  train=(debug=fast)  # bf16 autocast on a CPU without bf16 units takes minutes a step
  compiled=(debug=fast compile=true compile_backend=aot_eager)
fi
mkdir -p "$results"
summary=()
failed=0

part() {  # part NAME SECONDS COMMAND...: runs it under a time limit, logs it, records the outcome
  local name=$1 limit=$2
  shift 2
  if [ -n "${GPU_CHECK_ONLY:-}" ] && [[ " $GPU_CHECK_ONLY " != *" $name "* ]]; then
    return
  fi
  local start=$SECONDS
  echo "== $name: $*"
  local rc=0
  timeout $((limit * scale)) "$@" >"$work/$name.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    summary+=("pass  $name  $((SECONDS - start)) s")
  else
    summary+=("FAIL  $name  $((SECONDS - start)) s  (exit $rc; 124 = time limit; log: $work/$name.log)")
    failed=$((failed + 1))
  fi
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$work/parts.tsv"
  tail -n 25 "$work/$name.log"
}

run_dir=$work/train_bf16
part bench 150 env LOVASZSEG_TRITON=1 "$python" benchmarks/bench_losses.py "${bench[@]}" \
  --out "$results/bench_losses_$device.json"
# The same cases without the Triton prologue and epilogue (the default until these figures show
# the kernels faster).
part bench_no_triton 120 env LOVASZSEG_TRITON=0 "$python" benchmarks/bench_losses.py \
  "${bench[@]}" --no-memory --out "$results/bench_losses_${device}_no_triton.json"
part parity 60 "$python" benchmarks/gpu_parity.py --device "$device" "${parity[@]}" \
  --out "$results/gpu_parity"
part sync 60 "$python" benchmarks/gpu_sync.py --device "$device" --out "$results/gpu_sync"
part train 120 "$python" -m lovaszseg.train "${train[@]}" "hydra.run.dir=$run_dir"
part train_compiled 200 "$python" -m lovaszseg.train "${compiled[@]}" \
  "hydra.run.dir=$work/train_compiled"
part step 90 "$python" benchmarks/gpu_step_time.py --device "$device" "${step[@]}" \
  --out "$results/gpu_step_time"
images=$work/images
"$python" - "$images" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

folder = Path(sys.argv[1])
folder.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for i, side in enumerate((96, 300)):
    Image.fromarray(rng.integers(0, 255, (side, side + 40, 3), dtype=np.uint8)).save(
        folder / f"tile_{i}.png"
    )
EOF
predict_device=$([ "$device" = cuda ] && echo cuda || echo cpu)
part predict 60 "$python" -m lovaszseg.predict "ckpt_path=$run_dir/checkpoints/best.ckpt" \
  "input_dir=$images" "device=$predict_device" "hydra.run.dir=$work/predict"
part export 60 "$python" -m lovaszseg.export "ckpt_path=$run_dir/checkpoints/best.ckpt" \
  format=torchscript "output=$work/best.pt" "hydra.run.dir=$work/export"

"$python" - "$work/parts.tsv" "$results/gpu_check_$device.json" "$device" <<'EOF'
import json
import sys

import torch

parts_file, out, device = sys.argv[1:]
parts = []
for line in open(parts_file):
    name, rc, seconds = line.rstrip("\n").split("\t")
    parts.append({"part": name, "ok": rc == "0", "exit": int(rc), "seconds": int(seconds)})
name = torch.cuda.get_device_name() if device == "cuda" and torch.cuda.is_available() else device
with open(out, "w") as f:
    json.dump({"device": device, "device_name": name, "parts": parts}, f, indent=2)
EOF
{
  echo "gpu_check on $device ($("$python" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")'))"
  printf '%s\n' "${summary[@]}"
  echo "$failed part(s) failed; results in $results, logs in $work"
} | tee "$work/summary.txt"
[ "$failed" -eq 0 ]
