#!/usr/bin/env bash
# The 405B comparison of doc/simulation.md ("Results") and README: the
# volunteer swarm (sim/scenarios/seed-405b.toml) against the central A100
# cluster (central-a100-405b.toml) at 0.5 and 2 req/s, with and without
# speculation and churn, and the swarm cut to 1,000 and 100 nodes. One JSON
# line per run: its label and the simulator's summary (which includes the
# wall time the simulation took on this machine).
#   bench/sim_405b.sh [BUILD]
set -euo pipefail
BUILD=${1:-build}
SWARM="$BUILD/swarm"
DIR="$(dirname "$0")/../sim/scenarios"
run() {  # LABEL SCENARIO ARGS...
  local label=$1 scenario=$2
  shift 2
  local summary
  summary=$("$SWARM" sim "$DIR/$scenario.toml" "$@" --json 2>/dev/null | grep '"summary":true')
  echo "{\"bench\":\"sim_405b\",\"label\":\"$label\",${summary#\{}"
}
run "swarm, 0.5 req/s" seed-405b --arrival-rate 0.5
run "swarm, 0.5 req/s, no speculation" seed-405b --arrival-rate 0.5 --speculation off
run "central, 0.5 req/s" central-a100-405b --arrival-rate 0.5
run "central, 0.5 req/s, no speculation" central-a100-405b --arrival-rate 0.5 --speculation off
run "swarm, 2 req/s" seed-405b --arrival-rate 2
run "swarm, 2 req/s, no speculation" seed-405b --arrival-rate 2 --speculation off
run "swarm, 2 req/s, no churn" seed-405b --arrival-rate 2 --no-churn
run "central, 2 req/s" central-a100-405b --arrival-rate 2
run "central, 2 req/s, no speculation" central-a100-405b --arrival-rate 2 --speculation off
run "swarm, 1,000 nodes, 2 req/s" seed-405b --arrival-rate 2 --nodes 1000
run "swarm, 100 nodes, 2 req/s" seed-405b --arrival-rate 2 --nodes 100
