#!/usr/bin/env bash
# make demo: a swarm on this machine. Three `swarm node` processes each serve a
# third of the layers of the shipped model (models/kjv-target-Q8_0.gguf, trained on
# the King James Bible; see models/README.md), a `swarm gateway` routes through
# them, and text requests go through its OpenAI-compatible HTTP API, streamed.
set -euo pipefail
BUILD=${1:-build}
SWARM="$BUILD/swarm"
WORK="$BUILD/demo"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${DEMO_MODEL:-$ROOT/models/kjv-target-Q8_0.gguf}
mkdir -p "$WORK"
source "$(dirname "$0")/procs.sh"

if [ ! -f "$MODEL" ]; then
  echo "demo: $MODEL is missing" >&2
  exit 1
fi

peers=""
for range in 0:3 3:6 6:8; do
  start "node-${range/:/-}" node -m "$MODEL" --layers "$range" --listen 127.0.0.1:0 -t 1
  echo "demo: node serving layers $range on $addr"
  peers+="${peers:+,}$addr"
done
start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 --peers "$peers" --model-name kjv
echo "demo: gateway on http://$addr ($(grep -o 'chain .*' "$WORK/gateway.err" | head -1))"
echo
echo "demo: POST /v1/completions, streamed: the model continues a text"
"$SWARM" chat --url "http://$addr" --model kjv --complete -n 80 --temp 0.7 --seed 7 \
  "And it came to pass, when the king heard"
echo
echo "demo: POST /v1/chat/completions, streamed: asked for a verse by its reference"
"$SWARM" chat --url "http://$addr" --model kjv -n 60 --temp 0.7 --seed 7 "Psalms 23:1"
echo "demo: shutting the swarm down"
