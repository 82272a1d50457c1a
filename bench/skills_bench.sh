#!/usr/bin/env bash
# The skills market under load (doc/skills.md): six providers of one skill
# ("kjv", the shipped model) found through a DHT, behind one gateway:
#   fast       --skill, base price 1
#   slow3      --skill --slowdown 3, base price 1
#   cheap      --skill --slowdown 6, base price 0.2   (low price, poor speed)
#   dear       --skill, base price 4
#   backend    --backend over `swarm serve`, base price 1
#   backend3   --backend over `swarm serve --slowdown 3`, base price 1
# Every engine runs one thread and every slowdown is multiplied by BASE_SLOWDOWN
# (default 10), as in replica_bench.sh: a provider then behaves as a machine
# that many times slower while using a fraction of a core, so the providers'
# own speeds, not the 8 processes sharing this machine's cores, decide.
# Phase "steady": `swarm loadgen` streams; the gateway's log says which provider
# served each request, so each provider's share of the traffic is printed
# beside its price, its announced speed and the speed the gateway measured.
# Phase "kill": the same load, and `fast` is killed with SIGKILL once a third
# of the requests are done; its streams resume on other engine providers
# (greedy, the same weights), so no request may fail.
# One JSON line per provider and phase, then one per phase.
#   bench/skills_bench.sh [BUILD] [STREAMS, default 8] [REQUESTS, default 96] [TOKENS, default 64]
#                         [TIME_VALUE, default 0.05] [BASE_SLOWDOWN, default 10]
set -euo pipefail
BUILD=${1:-build}
STREAMS=${2:-8}
REQUESTS=${3:-96}
TOKENS=${4:-64}
TIME_VALUE=${5:-0.05}
BASE_SLOWDOWN=${6:-10}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-skills"
MODEL="$(dirname "$0")/../models/kjv-target-Q8_0.gguf"
rm -rf "$WORK"
mkdir -p "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"

start dht dht --listen 127.0.0.1:0
BOOT=$addr
declare -A ID PID PRICE SLOW
provider() {  # NAME PRICE SLOWDOWN KIND(skill|backend)
  local name=$1 price=$2 slow=$(( $3 * BASE_SLOWDOWN )) kind=$4 out
  out=$("$SWARM" keygen -o "$WORK/$name.key" --force)
  ID[$name]=$(grep -Eo '^[0-9a-f]{40}$' <<<"$out" | head -1)
  PRICE[$name]=$price
  SLOW[$name]=$slow
  if [ "$kind" = skill ]; then
    start "$name" node --skill -m "$MODEL" --skill-name kjv --listen 127.0.0.1:0 -t 1 \
      --slowdown "$slow" --price "$price" --capacity 4 --identity "$WORK/$name.key" \
      --bootstrap "$BOOT" --announce-interval 2
  else
    start "$name-serve" serve -m "$MODEL" --model-name kjv --listen 127.0.0.1:0 -t 1 \
      --slowdown "$slow" --parallel 4
    start "$name" node --backend "http://$addr" --listen 127.0.0.1:0 --price "$price" \
      --capacity 4 --identity "$WORK/$name.key" --bootstrap "$BOOT" --announce-interval 2
  fi
  PID[$name]=${pids[-1]}
}
NAMES=(fast slow3 cheap dear backend backend3)
provider fast 1 1 skill
provider slow3 1 3 skill
provider cheap 0.2 6 skill
provider dear 4 1 skill
provider backend 1 1 backend
provider backend3 1 3 backend
start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 --bootstrap "$BOOT" --dht-refresh 0.5 \
  --time-value "$TIME_VALUE" --audit-rate 0
URL="http://$addr"
# Every provider listed before the load starts.
for _ in $(seq 1 120); do
  n=$(curl -s "$URL/v1/models" | grep -o '"providers":[0-9]*' | cut -d: -f2 || true)
  [ "${n:-0}" -ge 6 ] && break
  sleep 0.5
done
[ "${n:-0}" -ge 6 ] || { echo "skills_bench.sh: the gateway lists ${n:-0} of 6 providers" >&2; exit 1; }

metric() {  # NAME [LABEL FILTER] -> the gateway's value of that metric (0 when absent)
  local v
  v=$(curl -s "$URL/metrics" | grep "^$1" | grep -F "${2:-}" | awk '{print $2}' | head -1)
  echo "${v:-0}" | cut -d. -f1
}
in_flight() { metric swarm_skill_provider_in_flight "provider=\"${ID[$1]}\""; }
served() {  # NAME -> requests the gateway logged as served by it
  grep -c "stream from ${ID[$1]:0:12}:" "$WORK/gateway.err" || true
}
phase() {  # LABEL [VICTIM]
  local label=$1 victim=${2:-} line before total=0 name n held=0 failovers0 resumes0
  failovers0=$(metric swarm_skill_failovers_total)
  resumes0=$(metric swarm_skill_resumes_total)
  declare -A was
  for name in "${NAMES[@]}"; do was[$name]=$(served "$name"); done
  if [ -n "$victim" ]; then
    "$SWARM" loadgen --url "$URL" --model kjv -c "$STREAMS" -r "$REQUESTS" -n "$TOKENS" --json \
      --label "$label" >"$WORK/loadgen-$label.json" &
    local lg=$!
    before=$(grep -c "skill kjv stream from" "$WORK/gateway.err" || true)
    # A third of the requests done, and the victim holding streams: it dies
    # with them in flight.
    while [ $(( $(grep -c "skill kjv stream from" "$WORK/gateway.err" || true) - before )) -lt $((REQUESTS / 3)) ] ||
          [ "$(in_flight "$victim")" -lt 1 ]; do
      sleep 0.05
    done
    held=$(in_flight "$victim")
    kill -9 "${PID[$victim]}"
    wait $lg
    line=$(cat "$WORK/loadgen-$label.json")
  else
    line=$("$SWARM" loadgen --url "$URL" --model kjv -c "$STREAMS" -r "$REQUESTS" -n "$TOKENS" --json --label "$label")
  fi
  for name in "${NAMES[@]}"; do
    n=$(( $(served "$name") - was[$name] ))
    total=$((total + n))
    eval "got_$name=$n"
  done
  for name in "${NAMES[@]}"; do
    n=$(eval echo "\$got_$name")
    printf '{"bench":"skills","phase":"%s","provider":"%s","base_price":%s,"slowdown":%s,"requests":%d,"share":%.3f}\n' \
      "$label" "$name" "${PRICE[$name]}" "${SLOW[$name]}" "$n" "$(awk -v a="$n" -v t="$total" 'BEGIN{print t ? a / t : 0}')"
  done
  local tok failed failovers resumes
  tok=$(sed 's/.*"aggregate_tok_s":\([0-9.]*\).*/\1/' <<<"$line")
  failed=$(sed 's/.*"errors":\([0-9]*\).*/\1/' <<<"$line")
  failovers=$(( $(metric swarm_skill_failovers_total) - failovers0 ))
  resumes=$(( $(metric swarm_skill_resumes_total) - resumes0 ))
  printf '{"bench":"skills","phase":"%s","streams":%d,"requests":%d,"max_tokens":%d,"time_value":%s,"aggregate_tok_s":%s,"failed_requests":%s,"failovers":%d,"exact_resumes":%d%s}\n' \
    "$label" "$STREAMS" "$REQUESTS" "$TOKENS" "$TIME_VALUE" "$tok" "${failed:-0}" "$failovers" "$resumes" \
    "$([ -n "$victim" ] && echo ",\"killed\":\"$victim\",\"streams_it_held\":$held")"
}
# Warm-up: every provider gets measured (exploration alone would take long).
"$SWARM" loadgen --url "$URL" --model kjv -c 6 -r 12 -n 8 >/dev/null
phase steady
phase kill fast
