#!/usr/bin/env bash
# One training run of fixed length on a CUDA machine (PyTorch, no Rust), its result exported
# into $OUT. Prepared here, run there through the device tool (train/README.md, "On a GPU"):
#
#   python train/gpu_set.py ../shared/data/train train/gpu_data        # once, here (32 MiB)
#   cp models/default.safetensors train/gpu_data/init.safetensors   # optional: continue the default
#   # device: bash train/gpu.sh 8        (carry train/gpu_data)
#
#   train/gpu.sh MINUTES [CONFIG_JSON]
#
# Trains for MINUTES of wall time (the whole call must fit the device's limit: data loading,
# the run and the export take about a minute more) in bf16 autocast at batch 128 of 128x128
# crops; the lr decays (cosine) over the last 60 % of the projected steps. Starts from
# train/gpu_data/init.safetensors when it exists (its config wins), else from scratch with
# CONFIG_JSON (default: the w64 architecture). Writes $OUT/model.safetensors (EMA weights,
# export.py --no-parity), $OUT/loss.csv, $OUT/train.log. No evaluation there: Kodak is not
# carried; evaluate here with train/evaluate.py --weights.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: train/gpu.sh MINUTES [CONFIG_JSON]}
config=${2:-'{"channels":[64,96,128,160],"blocks":1}'}
out=${OUT:-train/runs/gpu/out}
run=train/runs/gpu
py=${PYTHON:-python}
mkdir -p "$run" "$out"
# ALLOW_CPU=1 BATCH=4 CROP=64 PYTHON=.venv/bin/python train/gpu.sh 0.5 is the smoke test of this script on a CPU.
"$py" -c 'import os, torch; assert torch.cuda.is_available() or os.environ.get("ALLOW_CPU"), "no CUDA device"; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")' 2>&1 | tee "$out/train.log"
if [ -f train/gpu_data/init.safetensors ]; then
  # Continue a trained model: fresh optimiser, short warm-up, no more than the lr it ended on.
  init=(--init-weights train/gpu_data/init.safetensors --warmup 100 --lr 2e-4)
else
  init=(--config "$config" --lr 8e-4)
fi
"$py" train/train.py --run "$run" --data train/gpu_data --cache "" --kodak /nonexistent \
  --threads 8 --batch "${BATCH:-128}" --crop "${CROP:-128}" --bf16 --lr-min 1e-5 --ladder-frac 0.5 \
  --minutes "$minutes" --auto-decay 0.6 --ckpt-minutes 2 --log-every 50 "${init[@]}" \
  2>&1 | tee -a "$out/train.log"
"$py" train/export.py --ckpt "$run/ema.pt" --out "$out/model.safetensors" --no-parity 2>&1 | tee -a "$out/train.log"
cp "$run/loss.csv" "$out/"
