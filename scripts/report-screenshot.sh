#!/usr/bin/env bash
# Screenshots a study report in headless Chromium at 1000 px wide (what the docs' pictures are):
#   scripts/report-screenshot.sh runs/fm-keep/report.html docs/report-tradeoff.png [HEIGHT]
# Needs Debian's chromium (`apt-get install chromium`).
set -euo pipefail
html=$(realpath "$1")
out=$2
height=${3:-1400}
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" --window-size=1000,"$height" \
  --screenshot="$(realpath -m "$out")" "file://$html" 2>/dev/null
echo "$out"
