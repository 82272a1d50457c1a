#!/usr/bin/env bash
# Recovery from a lost stage: a 6-node swarm (two nodes per third of the
# model), SESSIONS streams generating TOKENS tokens each; once they are under
# way, the middle stage in use is killed (FAULT=kill: SIGKILL) or hung
# (FAULT=stop: SIGSTOP, which the gateway must detect by its step deadline;
# the gateway then runs with no --step-timeout, so only the deadline derived
# from measured step times can be met). Reports, as JSON lines, the run
# without and with the fault, and the recovery time (the longest wait between
# two tokens, less the usual one) and the tokens/s lost.
# The fault comes STRIKE_S seconds after the streams start (default 1: with
# many sessions, while the gateway has measured nothing yet).
#   bench/recovery_bench.sh [BUILD] [TOKENS] [LINK_DELAY_MS] [peers|dht] [kill|stop] [SESSIONS] [STRIKE_S]
set -euo pipefail
BUILD=${1:-build}
TOKENS=${2:-200}
DELAY=${3:-5}
DISCOVERY=${4:-peers}
FAULT=${5:-kill}
SESSIONS=${6:-1}
STRIKE_S=${7:-1}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-recovery"
MODEL="$BUILD/models/demo-tiny-Q8_0.gguf"
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -f "$MODEL" ] || "$SWARM" synth --shape demo-tiny --type Q8_0 --seed 1 -o "$MODEL" >&2

declare -A pid_of
case "$DISCOVERY" in
  peers | dht) ;;
  *) echo "recovery_bench.sh: DISCOVERY must be peers or dht, not '$DISCOVERY'" >&2; exit 2 ;;
esac
case "$FAULT" in
  kill) timeout=(--step-timeout-ms 2000) sig=KILL ;;
  stop) timeout=() sig=STOP ;;
  *) echo "recovery_bench.sh: FAULT must be kill or stop, not '$FAULT'" >&2; exit 2 ;;
esac
run() {  # KILL(0|1) -> one loadgen JSON line
  local kill=$1 peers="" range i=0 found=() boot
  if [ "$DISCOVERY" = dht ]; then
    start dht dht --listen 127.0.0.1:0
    boot=$addr
    found=(--bootstrap "$boot")
  fi
  for range in 0:3 3:6 6:8 0:3 3:6 6:8; do
    i=$((i + 1))
    local id=()
    if [ "$DISCOVERY" = dht ]; then
      [ -f "$WORK/node$i.key" ] || "$SWARM" keygen -o "$WORK/node$i.key" >/dev/null 2>&1
      id=(--identity "$WORK/node$i.key" --bootstrap "$boot")
    fi
    start "node-$range-${#pids[@]}" node -m "$MODEL" --layers "$range" --listen 127.0.0.1:0 -t 1 --link-delay-ms "$DELAY" \
      "${id[@]}"
    pid_of[$addr]=${pids[-1]}
    peers+="${peers:+,}$addr"
  done
  [ "$DISCOVERY" = peers ] && found=(--peers "$peers")
  start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 "${found[@]}" --link-delay-ms "$DELAY" \
    --speculate off "${timeout[@]}"
  local url="http://$addr" middle
  middle=$(grep -o 'chain .*' "$WORK/gateway.err" | awk '{print $5}')
  "$SWARM" loadgen --url "$url" -c "$SESSIONS" -n "$TOKENS" \
    --label "$([ "$kill" = 1 ] && echo "$FAULT" || echo baseline)" --json >"$WORK/result.json" &
  local gen=$!
  if [ "$kill" = 1 ]; then
    sleep "$STRIKE_S"  # a benchmark schedules its fault
    kill -"$sig" "${pid_of[$middle]}"
  fi
  wait "$gen"
  [ "$kill" = 1 ] && [ "$FAULT" = stop ] && kill -CONT "${pid_of[$middle]}"
  cat "$WORK/result.json"
  stop_all
  pids=()
}

base=$(run 0)
echo "$base"
killed=$(run 1)
echo "$killed"
field() { sed "s/.*\"$2\":\([0-9.]*\).*/\1/" <<<"$1"; }
awk -v bg="$(field "$base" max_gap_ms)" -v kg="$(field "$killed" max_gap_ms)" \
    -v br="$(field "$base" aggregate_tok_s)" -v kr="$(field "$killed" aggregate_tok_s)" -v n="$TOKENS" -v d="$DELAY" \
  -v disc="$DISCOVERY" -v fault="$FAULT" -v sessions="$SESSIONS" -v strike="$STRIKE_S" \
  'BEGIN { printf "{\"bench\":\"recovery\",\"fault\":\"%s\",\"sessions\":%d,\"strike_s\":%s,\"discovery\":\"%s\",\"tokens\":%d,\"link_delay_ms\":%d,\"recovery_ms\":%.1f,\"tok_s_baseline\":%.2f,\"tok_s_with_kill\":%.2f,\"tok_s_lost_fraction\":%.3f}\n", fault, sessions, strike, disc, n, d, kg - bg, br, kr, 1 - kr / br }'
