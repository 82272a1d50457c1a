#!/usr/bin/env bash
# Installs, from Debian's own packages, everything SwarmInfer builds against.
# Idempotent: packages already present are skipped, so `make` may call it every time.
# `--tests` adds Node.js and npm, which only the OpenAI-client and swarm-page
# tests need, chromium, the browser the swarm-page test drives, and
# python3-prometheus-client, whose parser the metrics test reads /metrics with,
# and Mesa's Vulkan drivers, whose lavapipe software device the Vulkan tests
# run on where there is no GPU (`make test` passes it; `make demo` does not
# wait for them). `--train` adds what
# tools/train_models.sh needs (PyTorch, the corpus); building and running
# SwarmInfer never needs those.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libpcre2-dev libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc libsodium-dev libssl-dev libcpp-httplib-dev
  libopendht-dev
  libsqlite3-dev  # reputation and the credits ledger
  curl  # the README's examples talk to the HTTP API with it
  prometheus-cpp-dev  # GET /metrics: metric types and the text format
  libsimgrid-dev libtomlplusplus-dev  # swarm sim: SimGrid's network model, TOML scenarios
  gnuplot-nox  # swarm sim's plot (without it the run skips the plot and says so)
  libvulkan-dev  # the Vulkan loader and headers: GPUs of every make (swarm devices)
  glslc  # compiles the Vulkan compute shaders (shaders/vulkan/*.comp) to SPIR-V at build time
)
tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1; PACKAGES+=(python3-prometheus-client chromium mesa-vulkan-drivers) ;;
    --train)
      # libopenblas0-pthread: without an optimised BLAS Debian's torch falls back to
      # reference BLAS, several times slower.
      PACKAGES+=(python3-torch python3-numpy libopenblas0-pthread bible-kjv bible-kjv-text) ;;
    *) echo "install-deps: unknown option $arg (--tests, --train)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js runs the OpenAI-client test. Machines that ship their own Node keep it
# (Debian's npm would conflict with it); others get Debian's.
if [ $tests -eq 1 ] && { ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; }; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing ${missing[*]}; run this as root (or install sudo)" >&2
    exit 1
  fi
  SUDO="sudo"
fi
# apt and dpkg print a few lines per package; they go to a log, shown if it fails.
log=$(mktemp "${TMPDIR:-/tmp}/swarm-install-deps.XXXXXX")
echo "install-deps: installing with apt-get (a few minutes): ${missing[*]}"
start=$SECONDS
if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         "${missing[@]}"; } >"$log" 2>&1; then
  echo "install-deps: apt-get failed; the end of its output ($log):" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
rm -f "$log"
echo "install-deps: ${#missing[@]} packages installed in $((SECONDS - start)) s"
