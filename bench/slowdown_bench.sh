#!/usr/bin/env bash
# What `swarm node --slowdown F` does to a pipeline: single-stream tokens/s
# through a 4-stage swarm (synthetic TinyLlama-1.1B, Q8_0, loopback, no link
# delay) with one stage slowed F = 1, 2, 4x. With stage times t, t, t, F t and
# compute dominating, the rate is 4 / (3 + F) of the unslowed one: 1, 0.8,
# 0.571 (plain decoding: --speculate off). One JSON line per F.
#   bench/slowdown_bench.sh [BUILD] [TOKENS] [MODEL]
set -euo pipefail
BUILD=${1:-build}
TOKENS=${2:-32}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-slowdown"
MODEL=${3:-"$BUILD/models/tinyllama-1.1b-Q8_0.gguf"}
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -f "$MODEL" ] || "$SWARM" synth --shape tinyllama-1.1b --type Q8_0 --seed 1 -o "$MODEL" >&2

base=""
for f in 1 2 4; do
  peers=""
  for s in 0 1 2 3; do
    a=$((22 * s / 4)) b=$((22 * (s + 1) / 4))
    slow=1
    [ "$s" = 2 ] && slow=$f
    start "node$s" node -m "$MODEL" --layers "$a:$b" --listen 127.0.0.1:0 -t 1 --no-mmap --slowdown "$slow"
    peers+="${peers:+,}$addr"
  done
  start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 -c 512 --peers "$peers" --speculate off
  "$SWARM" loadgen --url "http://$addr" -c 1 -r 2 -n 4 >/dev/null  # warm up
  line=$("$SWARM" loadgen --url "http://$addr" -c 1 -r 2 -n "$TOKENS" --label "slowdown $f" --json)
  rate=$(sed 's/.*"stream_tok_s":\([0-9.]*\).*/\1/' <<<"$line")
  base=${base:-$rate}
  printf '{"bench":"slowdown","slowdown":%s,"stages":4,"stream_tok_s":%s,"ratio":%.3f,"expected_ratio":%.3f}\n' \
    "$f" "$rate" "$(awk "BEGIN{print $rate / $base}")" "$(awk "BEGIN{print 4 / (3 + $f)}")"
  stop_all
  pids=()
done
