#!/usr/bin/env bash
# Speculative pipeline scheduling (doc/speculation.md): single-stream tokens/s
# of one process, a 4-stage pipeline decoding plainly, and the same pipeline
# speculating (auto: n-gram drafts when the controller finds they pay; ngram
# and draft: always) with n-gram drafts and with a draft model, at one-way link
# delays of 0, 20 and 100 ms on every hop, for two chains: four equal stages,
# and the same with stage 2 slowed 4x (--slowdown 4). Three prompts: code that
# repeats itself (ngram), one word repeated (repeat: the synthetic model's
# continuation repeats one token), and an ordinary sentence (plain). Target:
# synthetic TinyLlama-1.1B in Q8_0; draft: the same weights (same --seed) in
# Q4_0, run by the gateway on --draft-threads 1.
# Each result: one warm-up request (the gateway's controller learns stage
# times and acceptance from it, as a running gateway would have), then REPS
# requests of TOKENS tokens; stream_tok_s is their median, the counts are
# their sums. For speculative runs also: acceptance (accepted / drafted), mean
# accepted length (tokens per verified chain), wasted stage time (the nodes'
# cancelled_compute_us over compute_us during the requests, from swarm info),
# and goodput over the controller's first-order bound
# min((1 - a^(D+1)) / ((1 - a) rt), k / bt(k)). One JSON line per result.
# Another pair: TARGET=, DRAFT= (files), N_LAYER= (the target's layers), and
# PROMPT_NGRAM=, PROMPT_REPEAT=, PROMPT_PLAIN=, PROMPTS= (which of ngram,
# repeat, plain to run) in the environment (e.g. the shipped KJV models).
# SLOWDOWNS= (default "1 4") picks the chains.
#   bench/spec_bench.sh [BUILD] [TOKENS] [SHAPE] [DELAYS]
set -euo pipefail
BUILD=${1:-build}
TOKENS=${2:-32}
SHAPE=${3:-tinyllama-1.1b}
DELAYS=${4:-"0 20 100"}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-spec"
TARGET=${TARGET:-"$BUILD/models/$SHAPE-Q8_0.gguf"}
DRAFT=${DRAFT:-"$BUILD/models/$SHAPE-Q4_0.gguf"}
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -f "$TARGET" ] || "$SWARM" synth --shape "$SHAPE" --type Q8_0 --seed 1 -o "$TARGET" >&2
[ -f "$DRAFT" ] || "$SWARM" synth --shape "$SHAPE" --type Q4_0 --seed 1 -o "$DRAFT" >&2
N_LAYER=${N_LAYER:-22}  # tinyllama-1.1b's; set it for another shape

DEFAULT_NGRAM='def add(a, b):
    return a + b

def sub(a, b):
    return a - b

def mul(a, b):
    return a * b

def div(a, b):
    return a / b

def add(a, b):
    return a + b

def sub(a, b):'
PROMPT_NGRAM=${PROMPT_NGRAM:-$DEFAULT_NGRAM}
PROMPT_REPEAT=${PROMPT_REPEAT:-"ab ab ab ab ab ab ab ab ab ab ab ab"}
PROMPT_PLAIN=${PROMPT_PLAIN:-"The licensee may copy and distribute verbatim copies of the Program's source code"}
PROMPTS=${PROMPTS:-"ngram repeat plain"}
SLOWDOWNS=${SLOWDOWNS:-"1 4"}
REPS=${REPS:-3}
prompt_text() {
  case $1 in
    ngram) echo "$PROMPT_NGRAM" ;;
    repeat) echo "$PROMPT_REPEAT" ;;
    *) echo "$PROMPT_PLAIN" ;;
  esac
}

# Sum of one Info counter over the nodes in $node_addrs.
counter() {
  local sum=0 v
  for a in $node_addrs; do
    v=$("$SWARM" info "$a" | sed "s/.*\"$1\":\"\{0,1\}\([0-9]*\).*/\1/")
    sum=$((sum + v))
  done
  echo "$sum"
}

# The median of its arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# Sum of one numeric field over the last N speculation log lines of the gateway.
log_sum() {
  grep "speculation" "$WORK/gateway.err" | tail -"$2" | sed "$1" | awk '{s += $1} END {print s + 0}'
}

# measure LABEL URL PROMPT_NAME DELAY MODE -> one JSON line; sets $rate
measure() {
  local label=$1 url=$2 pname=$3 delay=$4 mode=$5 prompt line c0 w0 c1 w1 spec="" rates=()
  prompt=$(prompt_text "$pname")
  "$SWARM" loadgen --url "$url" -c 1 -r 1 -n "$TOKENS" --prompt "$prompt" >/dev/null  # warm up
  if [ -n "${node_addrs:-}" ]; then c0=$(counter compute_us) w0=$(counter cancelled_compute_us); fi
  for _ in $(seq "$REPS"); do
    line=$("$SWARM" loadgen --url "$url" -c 1 -r 1 -n "$TOKENS" --prompt "$prompt" --json)
    rates+=("$(sed 's/.*"stream_tok_s":\([0-9.]*\).*/\1/' <<<"$line")")
  done
  rate=$(median "${rates[@]}")
  if [ -n "${node_addrs:-}" ]; then
    c1=$(counter compute_us) w1=$(counter cancelled_compute_us)
    [ -n "${SPEC_BENCH_DEBUG:-}" ] && echo "compute $c0 -> $c1, cancelled $w0 -> $w1" >&2
    spec=$(printf ',"wasted_stage_time":%.3f' "$(awk "BEGIN{d = $c1 - $c0; x = d > 0 ? ($w1 - $w0) / d : 0; print x}")")
  fi
  local log
  log=$(grep "speculation" "$WORK/gateway.err" | tail -1 || true)
  if [ "$mode" != off ] && [ "$mode" != single ] && [ -n "$log" ]; then
    local drafted accepted chains bound
    drafted=$(log_sum 's/.*: \([0-9]*\) drafted.*/\1/' "$REPS")
    accepted=$(log_sum 's/.* \([0-9]*\) accepted.*/\1/' "$REPS")
    chains=$(log_sum 's/.* \([0-9]*\) chains.*/\1/' "$REPS")
    bound=$(sed 's/.*bound \([0-9.]*\) tok.*/\1/' <<<"$log")
    spec+=$(printf ',"drafted":%d,"accepted":%d,"acceptance":%.3f,"mean_accepted_length":%.2f,"goodput_bound_tok_s":%.2f,"goodput_over_bound":%.3f,"controller":"%s"' \
      "$drafted" "$accepted" "$(awk "BEGIN{x = $drafted > 0 ? $accepted / $drafted : 0; print x}")" \
      "$(awk "BEGIN{x = $chains > 0 ? ($accepted + $chains) / $chains : 0; print x}")" "$bound" \
      "$(awk "BEGIN{x = $bound > 0 ? $rate / $bound : 0; print x}")" "$(sed 's/.*cancelled, //' <<<"$log")")
  fi
  printf '{"bench":"speculation","model":"%s","label":"%s","prompt":"%s","link_delay_ms":%d,"mode":"%s","stream_tok_s":%s,"stream_tok_s_runs":[%s]%s}\n' \
    "$(basename "$TARGET" .gguf)" "$label" "$pname" "$delay" "$mode" "$rate" "$(IFS=,; echo "${rates[*]}")" "$spec"
}

node_addrs=""
start gateway serve -m "$TARGET" --listen 127.0.0.1:0 -t 2 -c 512 --no-mmap
for p in $PROMPTS; do measure "single process" "http://$addr" "$p" 0 single; done
stop_all
pids=()

for delay in $DELAYS; do
  for slowdown in $SLOWDOWNS; do
    node_addrs="" peers=""
    for s in 0 1 2 3; do
      a=$((N_LAYER * s / 4)) b=$((N_LAYER * (s + 1) / 4))
      slow=1
      [ "$s" = 2 ] && slow=$slowdown
      start "node$s" node -m "$TARGET" --layers "$a:$b" --listen 127.0.0.1:0 -t 1 --no-mmap \
        --link-delay-ms "$delay" --slowdown "$slow"
      peers+="${peers:+,}$addr"
      node_addrs+=" $addr"
    done
    chain="4 stages"
    [ "$slowdown" != 1 ] && chain="4 stages, one ${slowdown}x slower"
    gateway_pid=""
    for mode in off auto ngram "draft:$DRAFT"; do
      [ -n "$gateway_pid" ] && { kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; }
      start gateway gateway -m "$TARGET" --listen 127.0.0.1:0 -c 512 --peers "$peers" \
        --link-delay-ms "$delay" --speculate "$mode" --draft-threads 1
      gateway_pid=${pids[-1]}
      name=${mode%%:*}
      for p in $PROMPTS; do measure "$chain, $delay ms, $name" "http://$addr" "$p" "$delay" "$name"; done
    done
    stop_all
    pids=()
  done
done
