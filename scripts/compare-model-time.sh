#!/usr/bin/env bash
# Encode and decode time of one image at the default preset under two models, one ddpmc build,
# in one run (alternating, so both see the same machine load), then each decode's peak memory.
#
#   scripts/compare-model-time.sh MODEL_A MODEL_B [IMAGE] [RUNS]
#
# MODEL_*: a safetensors file, or "default" for the built-in default model. DDPMC names the
# build (default target/release/ddpmc); IMAGE defaults to ../shared/data/kodak/kodim01.png.
# Prints every run, the medians and the ratio B / A of the decode medians.
set -euo pipefail
a=$1
b=$2
img=${3:-../shared/data/kodak/kodim01.png}
runs=${4:-7}
bin=${DDPMC:-target/release/ddpmc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The --model option of side a or b (none for "default").
opt() {
  local model=$a
  [ "$1" = b ] && model=$b
  [ "$model" = default ] || echo "--model $model"
}
for _ in 1 2 3; do
  for m in a b; do
    s=$(date +%s%N)
    # shellcheck disable=SC2046
    "$bin" encode "$img" -o "$tmp/$m.ddpmc" --force --quiet $(opt "$m")
    e=$(date +%s%N)
    echo "encode $m $(( (e - s) / 1000000 )) ms"
  done
done | tee "$tmp/times"
for _ in $(seq "$runs"); do
  for m in a b; do
    s=$(date +%s%N)
    # shellcheck disable=SC2046
    "$bin" decode "$tmp/$m.ddpmc" -o "$tmp/$m.png" --force --quiet $(opt "$m")
    e=$(date +%s%N)
    echo "decode $m $(( (e - s) / 1000000 )) ms"
  done
done | tee -a "$tmp/times"
med() { grep "^$1 $2 " "$tmp/times" | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for op in encode decode; do
  echo "median $op: A $(med "$op" a) ms, B $(med "$op" b) ms"
done
echo "decode B / A: $(awk -v x="$(med decode a)" -v y="$(med decode b)" 'BEGIN {printf "%.2f", y / x}')"
for m in a b; do
  # shellcheck disable=SC2046
  /usr/bin/time -f "peak memory, decode $m: %M KB" "$bin" decode "$tmp/$m.ddpmc" -o "$tmp/$m.png" \
    --force --quiet $(opt "$m")
done
ls -l "$tmp"/*.ddpmc | awk '{print "file", $9, $5, "bytes"}'
