#!/usr/bin/env bash
# Throughput against replicas: a 2-stage swarm of the shipped kjv-target model
# (layers 0:4 and 4:8) with 1, 2 and 4 nodes per range, under `swarm loadgen`
# with 8 streams at once (and 32: with 8, 4 replicas leave 2 streams a chain,
# each already near one stream's best speed). Every node runs one thread and --slowdown S: each
# batch is made to take S times its compute, so a node behaves as a machine S
# times slower while using 1/S of a core. Then the nodes' time, not this
# machine's few cores, is what limits the swarm, as it would be with one
# machine per node; without it, 8 nodes on 2 cores share the same CPU time and
# replicas could not add any. Each replica count runs twice: with the
# gateway's default routing (load-aware, routing/stage_load.h) and with
# --route-load-weight 0 (by speed alone), which sends every request through
# one chain. Plain decoding (--speculate off): routing is what is measured.
# One JSON line per result; ratio_to_1 is to 1 replica with the same routing
# and streams; node_sessions are the sessions each node opened (warm-up
# included), in start order (stage 0:4, stage 4:8, next replica ...).
#   bench/replica_bench.sh [BUILD] [SLOWDOWN, default 10] [TOKENS, default 48] [STREAMS, default "8 32"]
set -euo pipefail
BUILD=${1:-build}
SLOWDOWN=${2:-10}
TOKENS=${3:-48}
STREAM_COUNTS=${4:-8 32}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-replica"
MODEL="$(dirname "$0")/../models/kjv-target-Q8_0.gguf"
mkdir -p "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"

declare -A base
for streams in $STREAM_COUNTS; do
  requests=$((4 * streams))
  for routing in load speed; do
    for replicas in 1 2 4; do
      rm -f "$WORK"/node-*.err
      peers=""
      for ((r = 0; r < replicas; r++)); do
        for range in 0:4 4:8; do
          start "node-$r-${range/:/-}" node -m "$MODEL" --layers "$range" --listen 127.0.0.1:0 -t 1 \
            --slowdown "$SLOWDOWN"
          peers+="${peers:+,}$addr"
        done
      done
      weight=1
      [ "$routing" = speed ] && weight=0
      start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 --peers "$peers" --speculate off \
        --audit-rate 0 --route-load-weight "$weight"
      url="http://$addr"
      # Warm up: every node measures its speed, pages are mapped.
      "$SWARM" loadgen --url "$url" -c "$streams" -r "$streams" -n 8 >/dev/null
      line=$("$SWARM" loadgen --url "$url" -c "$streams" -r "$requests" -n "$TOKENS" --json \
        --label "$replicas replicas, $routing, $streams streams")
      tok_s=$(sed 's/.*"aggregate_tok_s":\([0-9.]*\).*/\1/' <<<"$line")
      [ "$replicas" = 1 ] && base[$routing]=$tok_s
      sessions=""
      for ((r = 0; r < replicas; r++)); do
        for range in 0-4 4-8; do
          sessions+="${sessions:+,}$(grep -c "' opened by " "$WORK/node-$r-$range.err" || true)"
        done
      done
      printf '{"bench":"replicas","replicas_per_range":%d,"stages":2,"routing":"%s","slowdown":%s,"streams":%d,"requests":%d,"max_tokens":%d,"aggregate_tok_s":%s,"ratio_to_1":%.3f,"node_sessions":[%s]}\n' \
        "$replicas" "$routing" "$SLOWDOWN" "$streams" "$requests" "$TOKENS" "$tok_s" \
        "$(awk "BEGIN{print $tok_s / ${base[$routing]}}")" "$sessions"
      stop_all
    done
  done
done
