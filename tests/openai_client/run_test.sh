#!/usr/bin/env bash
# ctest's openai_client tests: the official openai npm package against
# `swarm serve` or, with MODE=swarm, a gateway over two nodes, with a context
# of 512 tokens (tests/js_client_test.sh).
#   run_test.sh SWARM_BINARY MODEL WORK_DIR [serve|swarm]
CONTEXT=512 exec bash "$(dirname "$0")/../js_client_test.sh" "$(dirname "$0")" openai "$@"
