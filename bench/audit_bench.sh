#!/usr/bin/env bash
# Audits on real swarms (doc/trust.md), one JSON line per result:
#  - false positives: honest nodes on different kernels (SWARM_ISA=avx2 and
#    avx512 where the CPU has it) audited at rate 1 by the gateway's own engine
#    until at least $STEPS steps were checked: every audit must pass;
#  - detection: for each cheat mode, fresh gateways (so every trial starts
#    with nobody excluded) at audit rates 1%, 5%, 10%, counting the cheater's
#    steps until it is excluded;
#  - cost: a 4-stage swarm of a synthetic TinyLlama-1.1B under `swarm loadgen`
#    with audits at 5% (by the gateway's engine, and by other nodes) against 0%.
#   bench/audit_bench.sh [BUILD] [STEPS=10000] [TRIALS=10] [PARTS=fp,detect,cost]
set -euo pipefail
BUILD=${1:-build}
STEPS=${2:-10000}
TRIALS=${3:-10}
PARTS=${4:-fp,detect,cost}
part() { [[ ",$PARTS," == *",$1,"* ]]; }
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-audit"
TINY="tests/data/models/tiny-llama/gguf/tiny-llama-Q8_0.gguf"
BIG="$BUILD/models/tinyllama-1.1b-Q8_0.gguf"
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"

trust() { curl -s "http://$1/trust"; }
field() { sed "s/.*\"$2\":\([0-9.e+-]*\).*/\1/" <<<"$1"; }
settle() {  # GATEWAY: waits until every audit submitted is judged; prints /trust
  local t
  for _ in $(seq 1 600); do
    t=$(trust "$1")
    if [ "$(field "$t" submitted)" = "$(($(field "$t" done) + $(field "$t" failed) + $(field "$t" dropped)))" ]; then
      echo "$t"
      return
    fi
    sleep 0.1
  done
  echo "$t"
}

# False positives across kernels.
if part fp; then
isa_a=avx2 isa_b=avx2
grep -q avx512f /proc/cpuinfo && isa_b=avx512
SWARM_ISA=$isa_a start a node -m "$TINY" --layers 0:2 --listen 127.0.0.1:0 -t 1
pa=$addr
SWARM_ISA=$isa_b start b node -m "$TINY" --layers 2:4 --listen 127.0.0.1:0 -t 1
pb=$addr
start g gateway -m "$TINY" --listen 127.0.0.1:0 --peers "$pa,$pb" --audit-rate 1 --audit-local "$TINY" --speculate ngram \
  --trust-db "$WORK/fp-trust.db"
gw=$addr
checked=0
while [ "$checked" -lt "$STEPS" ]; do
  "$SWARM" loadgen --url "http://$gw" -c 4 -r 16 -n 64 --prompt "In the beginning God created" >/dev/null
  t=$(settle "$gw")
  checked=$(($(field "$t" steps_checked) / 2))
done
printf '{"bench":"audit_false_positives","node_isas":"%s,%s","gateway_isa":"default","steps_checked":%d,"frauds":%s,"disputes":%s,"missing":%s,"passes":%s}\n' \
  "$isa_a" "$isa_b" "$checked" "$(field "$t" frauds)" "$(field "$t" disputes)" "$(field "$t" missing)" "$(field "$t" passes)"
stop_all
pids=()
fi

# Detection: steps a cheater serves before it is excluded, at the base rate
# (no probation), each trial with a gateway that knows nobody.
if part detect; then
start first node -m "$TINY" --layers 0:2 --listen 127.0.0.1:0 -t 1
first=$addr
start twin node -m "$TINY" --layers 2:4 --listen 127.0.0.1:0 -t 1 --slowdown 3
twin=$addr
for mode in noise skip-layer replay "noise --cheat-rate 0.3" "noise --cheat-rate 0.1"; do
  # shellcheck disable=SC2086
  start cheat node -m "$TINY" --layers 2:4 --listen 127.0.0.1:0 -t 1 --cheat $mode
  cheater=$addr
  cheat_pid=${pids[-1]}
  for rate in 0.01 0.05 0.1; do
    caught=0 within=0 total=0
    for trial in $(seq 1 "$TRIALS"); do
      rm -f "$WORK/detect-trust.db"*
      start gw gateway -m "$TINY" --listen 127.0.0.1:0 --peers "$first,$cheater,$twin" --audit-rate "$rate" \
        --speculate off --audit-local "$TINY" --audit-seed "$trial" --trust-db "$WORK/detect-trust.db" --probation-audit-rate 0
      gw=$addr gw_pid=${pids[-1]}
      steps=0 excluded=0
      while [ "$steps" -lt 2000 ]; do
        curl -s "http://$gw/v1/completions" -d '{"prompt":"In the beginning","max_tokens":16,"temperature":0}' >/dev/null
        # A request through the cheater ran 16 steps there (the prompt's, then 15).
        if grep "POST /v1/completions" "$WORK/gw.err" | tail -n 1 | grep -q "$cheater \["; then steps=$((steps + 16)); fi
        t=$(settle "$gw")
        if sed 's/.*"excluded":\[\([^]]*\)\].*/\1/' <<<"$t" | grep -q "\"$cheater\""; then excluded=1; break; fi
      done
      total=$((total + 1))
      if [ $excluded -eq 1 ]; then
        caught=$((caught + 1))
        [ "$steps" -le 100 ] && within=$((within + 1))
        echo "{\"bench\":\"audit_detection_trial\",\"cheat\":\"$mode\",\"audit_rate\":$rate,\"trial\":$trial,\"steps_until_excluded\":$steps}"
      fi
      kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
    done
    printf '{"bench":"audit_detection","cheat":"%s","audit_rate":%s,"trials":%d,"caught":%d,"caught_within_100_steps":%d}\n' \
      "$mode" "$rate" "$total" "$caught" "$within"
  done
  kill "$cheat_pid"; wait "$cheat_pid" 2>/dev/null || true
done
stop_all
pids=()
fi

# Cost: 4 stages, audits at 5% against none.
part cost || exit 0
[ -f "$BIG" ] || "$SWARM" synth --shape tinyllama-1.1b --type Q8_0 --seed 1 -o "$BIG" >&2
peers=""
for s in 0 1 2 3; do
  start "n$s" node -m "$BIG" --layers "$((22 * s / 4)):$((22 * (s + 1) / 4))" --listen 127.0.0.1:0 -t 1 --no-mmap
  peers+="${peers:+,}$addr"
done
# A second node per range, for audits by other nodes.
twins=""
for s in 0 1 2 3; do
  start "t$s" node -m "$BIG" --layers "$((22 * s / 4)):$((22 * (s + 1) / 4))" --listen 127.0.0.1:0 -t 1 --no-mmap --slowdown 2
  twins+=",$addr"
done
# Nodes past probation (--probation-audit-rate 0: the base rate from the start),
# each setting twice, alternating, so load elsewhere weighs on all alike; the
# better of the two runs of each counts.
cost() {  # LABEL GATEWAY-FLAGS...
  local label=$1 line
  shift
  rm -f "$WORK/cost-trust.db"*
  start gw gateway -m "$BIG" --listen 127.0.0.1:0 -c 512 --peers "$peers$twins" --trust-db "$WORK/cost-trust.db" \
    --speculate off --probation-audit-rate 0 "$@"
  "$SWARM" loadgen --url "http://$addr" -c 4 -r 4 -n 8 >/dev/null
  line=$("$SWARM" loadgen --url "http://$addr" -c 8 -r 16 -n 32 --label "$label" --json)
  echo "$line"
  tok=$(sed 's/.*"aggregate_tok_s":\([0-9.]*\).*/\1/' <<<"$line")
  t=$(settle "$addr")
  echo "{\"bench\":\"audit_cost_audits\",\"label\":\"$label\",\"audits\":$(sed 's/^{"audits":\({[^}]*}\).*/\1/' <<<"$t")}"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  unset 'pids[-1]'
}
best() { awk "BEGIN{print ($1 > $2) ? $1 : $2}"; }
base=0 local_tok=0 remote_tok=0
for round in 1 2; do
  cost "no audits" --audit-rate 0
  base=$(best "$base" "$tok")
  cost "audits 5%, gateway engine" --audit-rate 0.05 --audit-local "$BIG"
  local_tok=$(best "$local_tok" "$tok")
  cost "audits 5%, other nodes" --audit-rate 0.05
  remote_tok=$(best "$remote_tok" "$tok")
done
printf '{"bench":"audit_cost","stages":4,"aggregate_tok_s_none":%s,"ratio_local_5pct":%.3f,"ratio_remote_5pct":%.3f}\n' \
  "$base" "$(awk "BEGIN{print $local_tok / $base}")" "$(awk "BEGIN{print $remote_tok / $base}")"
