#!/usr/bin/env bash
# Rebuilds models/ from scratch: installs PyTorch and the corpus from Debian, trains the
# tokenizer and both models (tools/train_models.py, fixed seed), converts them to GGUF
# Q8_0 with `swarm convert`, and copies the references the tests compare against.
#   tools/train_models.sh [BUILD_DIR] [WORK_DIR]
# On 2 loaded CPU cores the training took about an hour and a half (target 58 min,
# draft 25); extra arguments after WORK_DIR go to train_models.py (e.g. --threads 2
# on an idle machine).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
WORK=${2:-$ROOT/build/kjv}
shift $(( $# > 2 ? 2 : $# ))
"$ROOT/scripts/install-deps.sh" --train
cmake --build "$BUILD" --target swarm
# Debian's python3-torch is for /usr/bin/python3, whatever python3 is first on PATH.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=1 \
  /usr/bin/python3 "$ROOT/tools/train_models.py" --out "$WORK" "$@"
for m in target draft; do
  "$BUILD/swarm" convert "$WORK/kjv-$m" --type Q8_0 -o "$ROOT/models/kjv-$m-Q8_0.gguf"
  mkdir -p "$ROOT/models/ref/kjv-$m"
  cp "$WORK/kjv-$m/ref/"* "$WORK/kjv-$m/train_log.json" "$ROOT/models/ref/kjv-$m/"
done
ls -l "$ROOT/models"
