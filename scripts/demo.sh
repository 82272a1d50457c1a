#!/usr/bin/env bash
# make demo: a swarm on this machine. Three `swarm node` processes each serve a
# third of the built-in model's layers, a `swarm gateway` routes through them,
# and a chat request goes through its OpenAI-compatible HTTP API, streamed.
set -euo pipefail
BUILD=${1:-build}
SWARM="$BUILD/swarm"
WORK="$BUILD/demo"
MODEL="$BUILD/models/demo-tiny-Q8_0.gguf"
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/procs.sh"

if [ ! -f "$MODEL" ]; then
  echo "demo: writing the built-in model (synthetic, random weights) to $MODEL"
  "$SWARM" synth --shape demo-tiny --type Q8_0 --seed 1 -o "$MODEL"
fi

peers=""
for range in 0:3 3:6 6:8; do
  start "node-${range/:/-}" node -m "$MODEL" --layers "$range" --listen 127.0.0.1:0 -t 1
  echo "demo: node serving layers $range on $addr"
  peers+="${peers:+,}$addr"
done
start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 --peers "$peers" --model-name demo
echo "demo: gateway on http://$addr ($(grep -o 'chain .*' "$WORK/gateway.err" | head -1))"
echo "demo: POST /v1/chat/completions, streamed (random weights: the words are the vocabulary's, the sense is not)"
echo
"$SWARM" chat --url "http://$addr" --model demo -n 48 --seed 1 "Tell me about swarms."
echo "demo: shutting the swarm down"
