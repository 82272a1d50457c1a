#!/usr/bin/env bash
# make demo: generate from the built-in default model (a small synthetic llama,
# written on first use) on this machine.
set -euo pipefail
BUILD=${1:-build}
MODEL="$BUILD/models/demo-tiny-Q8_0.gguf"
mkdir -p "$BUILD/models"
if [ ! -f "$MODEL" ]; then
  echo "demo: writing the built-in model to $MODEL"
  "$BUILD/swarm" synth --shape demo-tiny --type Q8_0 --seed 1 -o "$MODEL"
fi
echo "demo: swarm generate -m $MODEL --chat ... (random weights: the words are the vocabulary's, the sense is not)"
"$BUILD/swarm" generate -m "$MODEL" --chat "Tell me about swarms." -n 48 --seed 1
