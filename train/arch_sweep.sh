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
STEPS=${STEPS:-1500}
KODAK=${KODAK:-../shared/data/kodak}
names=("$@")
# The candidates and their configs live in train/arch_sweep.py (CONFIGS).
[ ${#names[@]} -eq 0 ] && read -r -a names <<< "$(python3 train/arch_sweep.py --names)"
for n in "${names[@]}"; do
  run=train/runs/arch-$n
  if [ ! -f "$run/ema.pt" ] || ! python3 -c "import torch,sys; sys.exit(torch.load('$run/ema.pt')['step'] < $STEPS)"; then
    python3 train/train.py --run "$run" --threads "${THREADS:-1}" --chain-frac 0.5 --steps "$STEPS" \
      --seed 2 --config "$(python3 train/arch_sweep.py --config "$n")"
  fi
  python3 train/export.py --ckpt "$run/ema.pt" --out "$run/model.safetensors" --no-parity
  python3 train/evaluate.py --threads 1 --weights "$run/model.safetensors" > "$run/evaluate.txt"
  if [ ! -f "results/arch-sweep/$n/results.csv" ]; then
    ./target/release/ddpmc bench --dataset "$KODAK" --limit 8 --settings q5 --no-classic \
      --model "$run/model.safetensors" --out "results/arch-sweep/$n"
  fi
done
