#!/usr/bin/env bash
# ctest's langchain_client tests: LangChain's ChatOpenAI (@langchain/openai)
# against `swarm serve` or, with MODE=swarm, a gateway over two nodes
# (tests/js_client_test.sh).
#   run_test.sh SWARM_BINARY MODEL WORK_DIR [serve|swarm]
exec bash "$(dirname "$0")/../js_client_test.sh" "$(dirname "$0")" @langchain/openai "$@"
