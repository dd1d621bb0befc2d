#!/usr/bin/env bash
# Width/depth sweep: train each candidate architecture for the same budget (1,500 steps of
# batch 16, lr 5e-4, seed 2, half chain marginals: the settings of train/runs/cmp-mix), then
# code the first 8 Kodak images with the real codec under each model.
#
#   train/arch_sweep.sh [NAME ...]        (default: all candidates; needs torch and a release build)
#
# Results: train/runs/arch-NAME/{eval.csv,loss.csv} and results/arch-sweep/NAME/ (bench output).
# train/arch_sweep.py turns them into results/arch-sweep/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A CFG=(
  [s32]='{"channels":[32,48,64,96],"blocks":1}'
  [b48]='{"channels":[48,64,96,128],"blocks":1}'
  [w64]='{"channels":[64,96,128,160],"blocks":1}'
  [d2]='{"channels":[48,64,96,128],"blocks":2}'
  [l5]='{"channels":[48,64,96,128,160],"blocks":1}'
)
STEPS=${STEPS:-1500}
KODAK=${KODAK:-../shared/data/kodak}
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(s32 b48 w64 d2 l5)
for n in "${names[@]}"; do
  run=train/runs/arch-$n
  if [ ! -f "$run/ema.pt" ] || ! python3 -c "import torch,sys; sys.exit(torch.load('$run/ema.pt')['step'] < $STEPS)"; then
    python3 train/train.py --run "$run" --threads "${THREADS:-1}" --chain-frac 0.5 --steps "$STEPS" \
      --seed 2 --config "${CFG[$n]}"
  fi
  python3 train/export.py --ckpt "$run/ema.pt" --out "$run/model.safetensors" --no-parity
  python3 train/evaluate.py --threads 1 --weights "$run/model.safetensors" > "$run/evaluate.txt"
  if [ ! -f "results/arch-sweep/$n/results.csv" ]; then
    ./target/release/ddpmc bench --dataset "$KODAK" --limit 8 --settings q5 --no-classic \
      --model "$run/model.safetensors" --out "results/arch-sweep/$n"
  fi
done
