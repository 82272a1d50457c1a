#!/usr/bin/env bash
# ctest's openai_client tests: start `swarm serve` on 127.0.0.1:0 (or, with
# MODE=swarm, two `swarm node` processes and a `swarm gateway` over them), run
# the official openai npm package against it (client_test.mjs), stop everything.
#   run_test.sh SWARM_BINARY MODEL WORK_DIR [serve|swarm]
# npm installs into WORK_DIR (in the build tree), never into the source tree,
# from npm's cache or the npm registry. Exit 77 (ctest: skipped), saying why,
# when node or npm is missing or the registry cannot be reached; a failed
# install from a registry that answers is a failure.
set -euo pipefail
swarm=$1 model=$2 work=$3 mode=${4:-serve}
src=$(cd "$(dirname "$0")" && pwd)
source "$src/../npm_ci.sh"
npm_ci_or_skip "$src" "$work" openai
cp "$src/client_test.mjs" "$work/"

SWARM=$swarm WORK=$work
source "$src/../../scripts/procs.sh"

if [ "$mode" = swarm ]; then
  start node0 node -m "$model" --layers 0:2 --listen 127.0.0.1:0 -t 1
  first=$addr
  start node1 node -m "$model" --layers 2:4 --listen 127.0.0.1:0 -t 1
  start server gateway -m "$model" --listen 127.0.0.1:0 -c 512 --model-name tiny --peers "$first,$addr"
else
  start server serve -m "$model" --listen 127.0.0.1:0 -t 1 -c 512 --model-name tiny
fi
echo "swarm $mode: listening on $addr"
port=${addr##*:}
server_pid=${pids[-1]}
status=0
node "$work/client_test.mjs" "http://127.0.0.1:$port/v1" tiny || status=$?
kill -TERM "$server_pid"
wait "$server_pid" || { rc=$?; if [ $rc -ne 0 ]; then echo "the server exited with $rc:"; cat "$work/server.err"; status=1; fi; }
exit $status
