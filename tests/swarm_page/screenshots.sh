#!/usr/bin/env bash
# Writes the README's pictures of the swarm page, doc/swarm-page.png (three
# nodes, a streamed chat answer) and doc/swarm-page-gap.png (one node killed):
# the swarm_page test run over the shipped model, models/kjv-target-Q8_0.gguf,
# on nodes holding layers 0-3, 3-6 and 6-8, as `make demo` splits it.
#   tests/swarm_page/screenshots.sh [BUILD]   (default: build; needs build/swarm)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
MODEL_NAME=kjv bash "$root/tests/swarm_page/run_test.sh" "$build/swarm" \
  "$root/models/kjv-target-Q8_0.gguf" "$build/swarm_page_screenshots" 0:3,3:6,6:8 "$root/doc"
ls -l "$root/doc/swarm-page.png" "$root/doc/swarm-page-gap.png"
