#!/usr/bin/env bash
# make bench: the engine on synthetic TinyLlama-1.1B in Q4_K_M, Q8_0 and F16
# (the shapes doc/performance.md compares llama.cpp on), the matmul kernels alone, the Vulkan
# kernels on the first Vulkan device (doc/vulkan.md; a "skipped" line without one), then the swarm
# against one process (bench/swarm_bench.sh) and recovery from a killed stage
# (bench/recovery_bench.sh), and a pipeline with one stage slowed by --slowdown
# (bench/slowdown_bench.sh), and speculation on the shipped KJV pair
# (bench/spec_acceptance.sh), and throughput against replicas per layer range
# (bench/replica_bench.sh).
# Every result is one JSON line on stdout.
set -euo pipefail
BUILD=${1:-build}
THREADS=${THREADS:-2}
mkdir -p "$BUILD/models"
for TYPE in Q4_K_M Q8_0 F16; do
  MODEL="$BUILD/models/tinyllama-1.1b-$TYPE.gguf"
  [ -f "$MODEL" ] || "$BUILD/swarm" synth --shape tinyllama-1.1b --type "$TYPE" --seed 1 -o "$MODEL" >&2
  "$BUILD/swarm" bench -m "$MODEL" -t "$THREADS" -p 64 -n 32 --json
  "$BUILD/swarm" bench -m "$MODEL" -t "$THREADS" -p 64 -n 32 --json --no-mmap
done
if [ -x "$BUILD/bench/matmul_bench" ]; then "$BUILD/bench/matmul_bench" --quick; fi
if [ -x "$BUILD/bench/vulkan_bench" ]; then "$BUILD/bench/vulkan_bench"; fi
"$(dirname "$0")/swarm_bench.sh" "$BUILD"
"$(dirname "$0")/recovery_bench.sh" "$BUILD"
"$(dirname "$0")/slowdown_bench.sh" "$BUILD"
"$(dirname "$0")/spec_acceptance.sh" "$BUILD"
"$(dirname "$0")/replica_bench.sh" "$BUILD"
