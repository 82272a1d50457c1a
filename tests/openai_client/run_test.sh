#!/usr/bin/env bash
# ctest's openai_client test: starts `swarm serve` on 127.0.0.1:0, runs the
# official openai npm package against it (client_test.mjs), stops the server.
#   run_test.sh SWARM_BINARY MODEL WORK_DIR
# npm installs into WORK_DIR (in the build tree), never into the source tree.
# Exit 77 (skipped) when node or npm is missing.
set -euo pipefail
swarm=$1 model=$2 work=$3
src=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node or npm not found: skipping"
  exit 77
fi
mkdir -p "$work"
if [ ! -d "$work/node_modules/openai" ] || ! cmp -s "$src/package-lock.json" "$work/package-lock.json"; then
  cp "$src/package.json" "$src/package-lock.json" "$work/"
  (cd "$work" && npm ci --no-audit --no-fund --ignore-scripts)
fi
cp "$src/client_test.mjs" "$work/"

# The server's stdout comes through a FIFO kept open on fd 3, so we can wait
# for its "listening on" line (no sleeps) and it never writes to a closed pipe.
fifo="$work/serve.$$.out"
rm -f "$fifo"
mkfifo "$fifo"
"$swarm" serve -m "$model" --listen 127.0.0.1:0 -t 1 -c 512 --model-name tiny >"$fifo" 2>"$work/serve.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$fifo"' EXIT
exec 3<"$fifo"
line=""
if ! IFS= read -r -t 120 line <&3 || [[ "$line" != "listening on "* ]]; then
  echo "swarm serve did not start (first line: '$line'):"
  cat "$work/serve.err"
  exit 1
fi
port=${line##*:}
echo "swarm serve: $line"
status=0
node "$work/client_test.mjs" "http://127.0.0.1:$port/v1" tiny || status=$?
kill -TERM "$pid"
wait "$pid" || { rc=$?; if [ $rc -ne 0 ]; then echo "swarm serve exited with $rc:"; cat "$work/serve.err"; status=1; fi; }
trap 'rm -f "$fifo"' EXIT
exit $status
