#!/usr/bin/env bash
# Installs, from Debian's own packages, everything SwarmInfer builds against.
# Idempotent: packages already present are skipped, so `make` may call it every time.
# `install-deps.sh --train` adds what tools/train_models.sh needs (PyTorch, the corpus);
# building and running SwarmInfer never needs those.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libpcre2-dev libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc libsodium-dev libssl-dev libcpp-httplib-dev
  libopendht-dev
)
if [ "${1:-}" = "--train" ]; then
  # libopenblas0-pthread: without an optimised BLAS Debian's torch falls back to
  # reference BLAS, several times slower.
  PACKAGES+=(python3-torch python3-numpy libopenblas0-pthread bible-kjv bible-kjv-text)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js runs the OpenAI-client test. Machines that ship their own Node keep it
# (Debian's npm would conflict with it); others get Debian's.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
