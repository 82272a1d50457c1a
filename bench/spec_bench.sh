#!/usr/bin/env bash
# Speculative pipeline scheduling (doc/speculation.md): single-stream tokens/s
# of one process, a 4-stage pipeline decoding plainly, and the same pipeline
# speculating with n-gram drafts and with a draft model, at one-way link
# delays of 0, 20 and 100 ms on every hop, with stage 2 slowed 4x
# (--slowdown 4). Two prompts: one that repeats itself (n-gram friendly) and
# a plain one. Target: synthetic TinyLlama-1.1B in Q8_0; draft: the same
# weights (same --seed) in Q4_0, run by the gateway on --draft-threads 1.
# For speculative runs also: acceptance (accepted / drafted), mean accepted
# length (tokens per verified chain), wasted stage time (the nodes'
# cancelled_compute_us over compute_us during the request, from swarm info),
# and goodput over the controller's first-order bound
# min((1 - a^(D+1)) / ((1 - a) rt), k / bt(k)). One JSON line per result.
#   bench/spec_bench.sh [BUILD] [TOKENS] [SHAPE] [DELAYS]
set -euo pipefail
BUILD=${1:-build}
TOKENS=${2:-32}
SHAPE=${3:-tinyllama-1.1b}
DELAYS=${4:-"0 20 100"}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-spec"
TARGET="$BUILD/models/$SHAPE-Q8_0.gguf"
DRAFT="$BUILD/models/$SHAPE-Q4_0.gguf"
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -f "$TARGET" ] || "$SWARM" synth --shape "$SHAPE" --type Q8_0 --seed 1 -o "$TARGET" >&2
[ -f "$DRAFT" ] || "$SWARM" synth --shape "$SHAPE" --type Q4_0 --seed 1 -o "$DRAFT" >&2
N_LAYER=${N_LAYER:-22}  # tinyllama-1.1b's; set it for another shape

PROMPT_NGRAM='def add(a, b):
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
PROMPT_PLAIN="The licensee may copy and distribute verbatim copies of the Program's source code"

# Sum of one Info counter over the nodes in $node_addrs.
counter() {
  local sum=0 v
  for a in $node_addrs; do
    v=$("$SWARM" info "$a" | sed "s/.*\"$1\":\"\{0,1\}\([0-9]*\).*/\1/")
    sum=$((sum + v))
  done
  echo "$sum"
}

# measure LABEL URL PROMPT_NAME PROMPT DELAY MODE -> one JSON line; sets $rate
measure() {
  local label=$1 url=$2 pname=$3 prompt=$4 delay=$5 mode=$6 line c0 w0 c1 w1 spec=""
  "$SWARM" loadgen --url "$url" -c 1 -r 1 -n 8 --prompt "$prompt" >/dev/null  # warm up
  if [ -n "${node_addrs:-}" ]; then c0=$(counter compute_us) w0=$(counter cancelled_compute_us); fi
  line=$("$SWARM" loadgen --url "$url" -c 1 -r 1 -n "$TOKENS" --prompt "$prompt" --json)
  rate=$(sed 's/.*"stream_tok_s":\([0-9.]*\).*/\1/' <<<"$line")
  if [ -n "${node_addrs:-}" ]; then
    c1=$(counter compute_us) w1=$(counter cancelled_compute_us)
    [ -n "${SPEC_BENCH_DEBUG:-}" ] && echo "compute $c0 -> $c1, cancelled $w0 -> $w1" >&2
    spec=$(printf ',"wasted_stage_time":%.3f' "$(awk "BEGIN{d = $c1 - $c0; x = d > 0 ? ($w1 - $w0) / d : 0; print x}")")
  fi
  local log
  log=$(grep "speculation" "$WORK/gateway.err" | tail -1 || true)
  if [ "$mode" != off ] && [ "$mode" != single ] && [ -n "$log" ]; then
    local drafted accepted chains bound
    drafted=$(sed 's/.*: \([0-9]*\) drafted.*/\1/' <<<"$log")
    accepted=$(sed 's/.* \([0-9]*\) accepted.*/\1/' <<<"$log")
    chains=$(sed 's/.* \([0-9]*\) chains.*/\1/' <<<"$log")
    bound=$(sed 's/.*bound \([0-9.]*\) tok.*/\1/' <<<"$log")
    spec+=$(printf ',"drafted":%d,"accepted":%d,"acceptance":%.3f,"mean_accepted_length":%.2f,"goodput_bound_tok_s":%.2f,"goodput_over_bound":%.3f,"controller":"%s"' \
      "$drafted" "$accepted" "$(awk "BEGIN{x = $drafted > 0 ? $accepted / $drafted : 0; print x}")" \
      "$(awk "BEGIN{x = $chains > 0 ? ($accepted + $chains) / $chains : 0; print x}")" "$bound" \
      "$(awk "BEGIN{x = $bound > 0 ? $rate / $bound : 0; print x}")" "$(sed 's/.*cancelled, //' <<<"$log")")
  fi
  printf '{"bench":"speculation","label":"%s","prompt":"%s","link_delay_ms":%d,"mode":"%s","stream_tok_s":%s%s}\n' \
    "$label" "$pname" "$delay" "$mode" "$rate" "$spec"
}

node_addrs=""
start gateway serve -m "$TARGET" --listen 127.0.0.1:0 -t 2 -c 512 --no-mmap
measure "single process" "http://$addr" ngram "$PROMPT_NGRAM" 0 single
measure "single process" "http://$addr" plain "$PROMPT_PLAIN" 0 single
stop_all
pids=()

for delay in $DELAYS; do
  node_addrs="" peers=""
  for s in 0 1 2 3; do
    a=$((N_LAYER * s / 4)) b=$((N_LAYER * (s + 1) / 4))
    slow=1
    [ "$s" = 2 ] && slow=4
    start "node$s" node -m "$TARGET" --layers "$a:$b" --listen 127.0.0.1:0 -t 1 --no-mmap \
      --link-delay-ms "$delay" --slowdown "$slow"
    peers+="${peers:+,}$addr"
    node_addrs+=" $addr"
  done
  gateway_pid=""
  for mode in off ngram "draft:$DRAFT"; do
    [ -n "$gateway_pid" ] && { kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; }
    start gateway gateway -m "$TARGET" --listen 127.0.0.1:0 -c 512 --peers "$peers" \
      --link-delay-ms "$delay" --speculate "$mode" --draft-threads 1
    gateway_pid=${pids[-1]}
    name=${mode%%:*}
    measure "4 stages, $delay ms, $name" "http://$addr" ngram "$PROMPT_NGRAM" "$delay" "$name"
    measure "4 stages, $delay ms, $name" "http://$addr" plain "$PROMPT_PLAIN" "$delay" "$name"
  done
  stop_all
  pids=()
done
