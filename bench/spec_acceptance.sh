#!/usr/bin/env bash
# Speculation on real text: the shipped KJV target with n-gram lookup and with the
# shipped draft model, 4 to 8 drafts per pass, on 20 prompts from the held-out books
# (bench/data/kjv-val-prompts.jsonl, written by tools/kjv_val_prompts.py). Greedy, one
# process (`swarm spec-eval`): acceptance rate, mean accepted length, tokens per target
# pass. One JSON line per drafter and k.
#   bench/spec_acceptance.sh [BUILD_DIR] [TOKENS_PER_PROMPT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
N=${2:-64}
for drafter in ngram "draft:$ROOT/models/kjv-draft-Q8_0.gguf"; do
  "$BUILD/swarm" spec-eval -m "$ROOT/models/kjv-target-Q8_0.gguf" --drafter "$drafter" \
    --prompts "$ROOT/bench/data/kjv-val-prompts.jsonl" -k 4,5,6,7,8 -n "$N"
done
