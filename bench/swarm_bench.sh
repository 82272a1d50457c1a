#!/usr/bin/env bash
# The swarm against one process, same model, same machine (synthetic
# TinyLlama-1.1B, Q8_0): single-stream and 16-stream tokens/s through the HTTP
# API, for 2 and 4 stages on loopback with an emulated one-way link delay on
# every message (0, 5, 20 ms), pushing stage to stage or relaying through the
# gateway. One JSON line per result; ratios are to the single process.
# The gateway decodes plainly (--speculate off), as the single process does;
# bench/spec_bench.sh measures speculation.
# Weights are read into memory (--no-mmap): it is the faster way on this kind of
# machine, and it is the same for both sides. Each node runs one thread, so an
# N-stage swarm uses N threads against the single process's 2.
#   bench/swarm_bench.sh [BUILD] [TOKENS]
set -euo pipefail
BUILD=${1:-build}
TOKENS=${2:-32}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-swarm"
MODEL="$BUILD/models/tinyllama-1.1b-Q8_0.gguf"
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -f "$MODEL" ] || "$SWARM" synth --shape tinyllama-1.1b --type Q8_0 --seed 1 -o "$MODEL" >&2

measure() {  # LABEL URL -> two JSON lines (1 stream, 16 streams); sets $single and $multi
  local label=$1 url=$2 line
  "$SWARM" loadgen --url "$url" -c 1 -r 2 -n 4 >/dev/null  # warm up: pages mapped, caches filled
  line=$("$SWARM" loadgen --url "$url" -c 1 -r 2 -n "$TOKENS" --label "$label" --json)
  single=$(sed 's/.*"stream_tok_s":\([0-9.]*\).*/\1/' <<<"$line")
  echo "$line"
  line=$("$SWARM" loadgen --url "$url" -c 16 -r 16 -n "$TOKENS" --label "$label" --json)
  multi=$(sed 's/.*"aggregate_tok_s":\([0-9.]*\).*/\1/' <<<"$line")
  echo "$line"
}

start serve serve -m "$MODEL" --listen 127.0.0.1:0 -t 2 -c 512 --no-mmap
measure "single process" "http://$addr"
base_single=$single base_multi=$multi
stop_all
pids=()

for stages in 2 4; do
  for delay in 0 5 20; do
    for mode in push relay; do
      peers=""
      for ((s = 0; s < stages; s++)); do
        a=$((22 * s / stages)) b=$((22 * (s + 1) / stages))
        start "node$s" node -m "$MODEL" --layers "$a:$b" --listen 127.0.0.1:0 -t 1 --no-mmap --link-delay-ms "$delay"
        peers+="${peers:+,}$addr"
      done
      flags=(--link-delay-ms "$delay" --speculate off)
      [ "$mode" = relay ] && flags+=(--relay)
      start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 -c 512 --peers "$peers" "${flags[@]}"
      label="$stages stages, $delay ms, $mode"
      measure "$label" "http://$addr"
      printf '{"bench":"swarm_vs_single","label":"%s","stages":%d,"link_delay_ms":%d,"mode":"%s","single_stream_ratio":%.3f,"aggregate_16_ratio":%.3f}\n' \
        "$label" "$stages" "$delay" "$mode" "$(awk "BEGIN{print $single / $base_single}")" "$(awk "BEGIN{print $multi / $base_multi}")"
      stop_all
      pids=()
    done
  done
done
