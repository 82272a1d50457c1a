#!/usr/bin/env bash
# Soak: honest load through a two-node swarm, first alone, then while hostile
# callers (bench/hostile_client.cc: huge steps, huge contexts, a thousand hops,
# NaN states, garbage bytes, long prompts, idle sessions, a stream that never
# reads) attack both nodes for the same time. Prints JSON lines: the honest
# throughput of each run, their ratio (goal >= 0.9), and the nodes' peak RSS
# and thread counts.
#   bench/soak_bench.sh [BUILD] [SECONDS per run, default 600] [STREAMS, default 4]
set -euo pipefail
BUILD=${1:-build}
SECONDS_PER_RUN=${2:-600}
STREAMS=${3:-4}
SWARM="$BUILD/swarm"
HOSTILE="$BUILD/bench/hostile_client"
WORK="$BUILD/bench-soak"
MODEL="$(dirname "$0")/../models/kjv-target-Q8_0.gguf"
mkdir -p "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -x "$HOSTILE" ] || { echo "soak_bench.sh: build $HOSTILE first (cmake --build $BUILD)" >&2; exit 2; }

start node-a node -m "$MODEL" --layers 0:4 --listen 127.0.0.1:0 -t 1
A=$addr; PID_A=${pids[-1]}
start node-b node -m "$MODEL" --layers 4:8 --listen 127.0.0.1:0 -t 1
B=$addr; PID_B=${pids[-1]}
start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 --peers "$A,$B"
URL="http://$addr"
INFO=$("$SWARM" info "$B")
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$INFO"; }
MODEL_ID=$(field model_id); N_LAYER=$(field n_layer); D_MODEL=$(field d_model)

# Honest load for $SECONDS_PER_RUN seconds; prints tokens/s over the whole run.
honest() {
  local end=$((SECONDS + SECONDS_PER_RUN)) tokens=0 start_ns now_ns line
  start_ns=$(date +%s%N)
  while [ $SECONDS -lt $end ]; do
    line=$("$SWARM" loadgen --url "$URL" -c "$STREAMS" -r $((2 * STREAMS)) -n 32 --json 2>>"$WORK/loadgen.err") || true
    local rate wall
    rate=$(sed -n 's/.*"aggregate_tok_s":\([0-9.]*\).*/\1/p' <<<"$line")
    wall=$(sed -n 's/.*"wall_s":\([0-9.]*\).*/\1/p' <<<"$line")
    [ -n "$rate" ] && tokens=$(awk -v t="$tokens" -v r="$rate" -v w="$wall" 'BEGIN{print t + r * w}')
  done
  now_ns=$(date +%s%N)
  awk -v t="$tokens" -v ns=$((now_ns - start_ns)) 'BEGIN{printf "%.2f", t / (ns / 1e9)}'
}
peak() {  # FIELD PID -> the largest value seen in /proc/PID/status
  sed -n "s/^$1:[[:space:]]*\([0-9]*\).*/\1/p" "/proc/$2/status" 2>/dev/null || echo 0
}

clean=$(honest)
threads_clean=$(( $(peak Threads "$PID_A") + $(peak Threads "$PID_B") ))
"$HOSTILE" --target "$A" --model-id "$MODEL_ID" --first 0 --last 4 --n-layer "$N_LAYER" \
  --seconds "$SECONDS_PER_RUN" >"$WORK/hostile-a.json" 2>"$WORK/hostile-a.err" &
HA=$!
"$HOSTILE" --target "$B" --model-id "$MODEL_ID" --first 4 --last 8 --n-layer "$N_LAYER" \
  --d-model "$D_MODEL" --seconds "$SECONDS_PER_RUN" >"$WORK/hostile-b.json" 2>"$WORK/hostile-b.err" &
HB=$!
max_threads=0
( while kill -0 $HA 2>/dev/null; do
    t=$(( $(peak Threads "$PID_A") + $(peak Threads "$PID_B") ))
    echo "$t"; sleep 1
  done ) >"$WORK/threads.txt" &
SAMPLER=$!
attacked=$(honest)
wait $HA $HB || true
wait $SAMPLER 2>/dev/null || true
max_threads=$(sort -n "$WORK/threads.txt" | tail -1)
kill -0 "$PID_A" 2>/dev/null && alive_a=true || alive_a=false
kill -0 "$PID_B" 2>/dev/null && alive_b=true || alive_b=false
echo "{\"bench\":\"soak\",\"label\":\"clean\",\"seconds\":$SECONDS_PER_RUN,\"streams\":$STREAMS,\"honest_tok_s\":$clean,\"threads\":$threads_clean}"
echo "{\"bench\":\"soak\",\"label\":\"attacked\",\"seconds\":$SECONDS_PER_RUN,\"streams\":$STREAMS,\"honest_tok_s\":$attacked,\"max_threads\":${max_threads:-0},\"peak_rss_kb_a\":$(peak VmHWM "$PID_A"),\"peak_rss_kb_b\":$(peak VmHWM "$PID_B"),\"nodes_alive\":$([ $alive_a = true ] && [ $alive_b = true ] && echo true || echo false)}"
awk -v a="$attacked" -v c="$clean" 'BEGIN{printf "{\"bench\":\"soak\",\"label\":\"ratio\",\"attacked_over_clean\":%.3f}\n", (c > 0 ? a / c : 0)}'
cat "$WORK/hostile-a.json" "$WORK/hostile-b.json"
