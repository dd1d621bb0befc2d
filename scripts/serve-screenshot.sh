#!/usr/bin/env bash
# Screenshot of `ddpmc serve` after the page has played a file's decode to its last step,
# in headless Chromium (Debian's `chromium` package).
#
# Usage: scripts/serve-screenshot.sh OUT.png FILE.ddpmc|DIR... [-- QUERY]
#   QUERY: page options, for example side=1 (side by side with the original) or file=1.
# WINDOW=W,H sets the browser window in pixels (default 1400,900).
# Exits 0 with a note when Chromium is not installed.
set -euo pipefail
out=$1; shift
query=""
args=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then query=${2:-}; break; fi
    args+=("$1"); shift
done
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "skipped: no Chromium on PATH (apt-get install chromium)" >&2
    exit 0
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${DDPMC:-$repo/target/release/ddpmc}
log=$(mktemp)
"$bin" serve "${args[@]}" --port 0 > "$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q http "$log" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*/' "$log")
"$browser" --headless --no-sandbox --disable-gpu --window-size="${WINDOW:-1400,900}" \
    --virtual-time-budget=60000 --screenshot="$out" "${url}?${query}" 2>/dev/null
echo "wrote $out (${url}?${query})"
