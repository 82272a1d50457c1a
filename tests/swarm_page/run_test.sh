#!/usr/bin/env bash
# ctest's swarm_page test: three `swarm node` processes and a `swarm gateway`
# over them on 127.0.0.1; Debian's chromium, driven by playwright-core
# (page_test.mjs), opens the gateway's page, sees every node, streams a chat
# answer, kills the second node and sees its layers become a gap.
#   run_test.sh SWARM_BINARY MODEL WORK_DIR LAYERS [SCREENSHOT_DIR]
# LAYERS: the nodes' ranges, "A:B,B:C,C:D". With SCREENSHOT_DIR the test
# writes swarm-page.png (the whole swarm, a streamed answer) and
# swarm-page-gap.png (after the kill) there. MODEL_NAME names the model
# (default tiny); CHROMIUM is the browser (default /usr/bin/chromium).
# Exit 77 (ctest: skipped), saying why, when chromium, node or npm is missing
# or the npm registry cannot be reached (tests/npm_ci.sh).
set -euo pipefail
swarm=$1 model=$2 work=$3 layers=$4 shots=${5:-}
src=$(cd "$(dirname "$0")" && pwd)
export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  echo "skipped: $CHROMIUM is not installed (scripts/install-deps.sh --tests installs Debian's chromium)"
  exit 77
fi
source "$src/../npm_ci.sh"
npm_ci_or_skip "$src" "$work" playwright-core
cp "$src/page_test.mjs" "$work/"

SWARM=$swarm WORK=$work
source "$src/../../scripts/procs.sh"

IFS=, read -ra ranges <<<"$layers"
nodes="" peers=""
for i in "${!ranges[@]}"; do
  start "node$i" node -m "$model" --layers "${ranges[$i]}" --listen 127.0.0.1:0 -t 1
  nodes+="${nodes:+,}$addr=${pids[-1]}=${ranges[$i]}"
  peers+="${peers:+,}$addr"
done
rm -f "$work"/gateway.db*  # reputation starts afresh
# Each step delayed 30 ms (as over a WAN), so that an answer streams for a few
# seconds: long enough for the page to show it arriving and its request live.
start gateway gateway -m "$model" --listen 127.0.0.1:0 -c 512 --model-name "${MODEL_NAME:-tiny}" \
  --peers "$peers" --trust-db "$work/gateway.db" --link-delay-ms 30
echo "gateway listening on $addr over nodes $nodes"
gateway_pid=${pids[-1]}
status=0
(cd "$work" && node page_test.mjs "http://$addr/" "$nodes" "$shots") || status=$?
kill -TERM "$gateway_pid"
wait "$gateway_pid" || { rc=$?; if [ $rc -ne 0 ]; then echo "the gateway exited with $rc:"; cat "$work/gateway.err"; status=1; fi; }
if [ $status -ne 0 ]; then
  echo "--- the gateway's log:"
  tail -n 30 "$work/gateway.err"
fi
exit $status
