#!/usr/bin/env bash
# The ctest tests of JavaScript clients (tests/openai_client, tests/ai_sdk_client,
# tests/langchain_client): start `swarm serve` on 127.0.0.1:0 (or, with
# MODE=swarm, two `swarm node` processes and a `swarm gateway` over them), run
# CLIENT_DIR/client_test.mjs against it, stop everything.
#   [CONTEXT=N] js_client_test.sh CLIENT_DIR NPM_PACKAGE SWARM_BINARY MODEL WORK_DIR [serve|swarm]
# npm installs CLIENT_DIR's lock into WORK_DIR (tests/npm_ci.sh), in the build
# tree, never into the source tree; exit 77 (ctest: skipped), saying why, when
# node or npm is missing or the registry cannot be reached; a failed install
# from a registry that answers is a failure. The context (CONTEXT, default 2048
# tokens) is long enough that a stream the client aborts is still being
# generated when the abort arrives.
set -euo pipefail
src=$(cd "$1" && pwd) package=$2 swarm=$3 model=$4 work=$5 mode=${6:-serve} context=${CONTEXT:-2048}
source "$(dirname "$0")/npm_ci.sh"
npm_ci_or_skip "$src" "$work" "$package"
cp "$src/client_test.mjs" "$(dirname "$0")/js_client_common.mjs" "$work/"

SWARM=$swarm WORK=$work
source "$(dirname "$0")/../scripts/procs.sh"

if [ "$mode" = swarm ]; then
  start node0 node -m "$model" --layers 0:2 --listen 127.0.0.1:0 -t 1
  first=$addr
  start node1 node -m "$model" --layers 2:4 --listen 127.0.0.1:0 -t 1
  start server gateway -m "$model" --listen 127.0.0.1:0 -c "$context" --model-name tiny --peers "$first,$addr"
else
  start server serve -m "$model" --listen 127.0.0.1:0 -t 1 -c "$context" --model-name tiny
fi
echo "swarm $mode: listening on $addr"
port=${addr##*:}
server_pid=${pids[-1]}
status=0
node "$work/client_test.mjs" "http://127.0.0.1:$port/v1" tiny || status=$?
kill -TERM "$server_pid"
wait "$server_pid" || { rc=$?; if [ $rc -ne 0 ]; then echo "the server exited with $rc:"; cat "$work/server.err"; status=1; fi; }
exit $status
