# Sourced by the tests that run npm packages (tests/openai_client,
# tests/swarm_page, tests/js_client_test.sh):
#   npm_ci_or_skip SRC WORK PACKAGE
# installs SRC's package.json and package-lock.json into WORK (in the build
# tree, never the source tree) with `npm ci`, from npm's cache or the npm
# registry, unless WORK already holds that lock's install. Exits 77 (ctest:
# skipped), saying why, when node or npm is missing or the registry cannot be
# reached; a failed install from a registry that answers is a failure (exit 1).
npm_ci_or_skip() {
  local src=$1 work=$2 package=$3 registry
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "skipped: node or npm is not installed (scripts/install-deps.sh --tests installs them)"
    exit 77
  fi
  mkdir -p "$work"
  if [ -d "$work/node_modules/$package" ] && cmp -s "$src/package-lock.json" "$work/package-lock.json"; then
    return 0
  fi
  cp "$src/package.json" "$src/package-lock.json" "$work/"
  if (cd "$work" && npm ci --prefer-offline --no-audit --no-fund --ignore-scripts \
        --fetch-retries=1 --fetch-timeout=30000) >"$work/npm.log" 2>&1; then
    return 0
  fi
  registry=$(npm config get registry 2>/dev/null || echo "the npm registry")
  if ! timeout 60 npm ping --fetch-retries=0 --fetch-timeout=15000 >/dev/null 2>&1; then
    echo "npm ci said:"
    grep -m 3 -i "err" "$work/npm.log" || tail -n 3 "$work/npm.log"
    echo "skipped: the npm registry ($registry) cannot be reached; this test needs the '$package' npm package from it"
    exit 77
  fi
  echo "npm ci failed, although $registry answers:"
  cat "$work/npm.log"
  exit 1
}
