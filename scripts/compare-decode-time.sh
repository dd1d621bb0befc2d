#!/usr/bin/env bash
# Decode time of one image at each build's default preset, two ddpmc builds side by side in
# one run (alternating, so both see the same machine load). Prints every run and the medians.
#
#   scripts/compare-decode-time.sh OLD_DDPMC NEW_DDPMC [IMAGE] [RUNS]
#
# OLD_DDPMC: e.g. a release build of an earlier commit (git worktree add /tmp/old <rev>;
# cargo build --release there). IMAGE defaults to ../shared/data/kodak/kodim01.png.
set -euo pipefail
old=$1
new=$2
img=${3:-../shared/data/kodak/kodim01.png}
runs=${4:-7}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$old" encode "$img" -o "$tmp/old.ddpmc" --force --quiet
"$new" encode "$img" -o "$tmp/new.ddpmc" --force --quiet
for _ in $(seq "$runs"); do
  for b in old new; do
    bin=$old
    [ "$b" = new ] && bin=$new
    s=$(date +%s%N)
    "$bin" decode "$tmp/$b.ddpmc" -o "$tmp/$b.png" --force --quiet
    e=$(date +%s%N)
    echo "$b $(( (e - s) / 1000000 )) ms"
  done
done | tee "$tmp/times"
for b in old new; do
  echo "median $b: $(grep "^$b " "$tmp/times" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms"
done
