# Sourced by scripts that run swarm processes (the demo, tests, benchmarks):
#   start NAME ARGS...   runs "$SWARM ARGS" in the background, waits for its
#                        "listening on HOST:PORT" line and sets $addr to HOST:PORT.
#                        Its stderr goes to $WORK/NAME.err.
# Every process started is killed when the sourcing script exits.
# Needs SWARM (the swarm binary) and WORK (a folder for FIFOs and logs).

pids=()
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -f "$WORK"/*.$$.out
}
trap stop_all EXIT

# stdout comes through a FIFO kept open on a new fd, so we wait for the line
# (no sleeps) and the process never writes to a closed pipe.
start() {
  local name=$1
  shift
  local fifo="$WORK/$name.$$.out" fd line=""
  rm -f "$fifo"
  mkfifo "$fifo"
  "$SWARM" "$@" >"$fifo" 2>"$WORK/$name.err" &
  pids+=($!)
  exec {fd}<"$fifo"
  if ! IFS= read -r -t 120 line <&$fd || [[ "$line" != "listening on "* ]]; then
    echo "swarm $1 ($name) did not start (first line: '$line'):" >&2
    cat "$WORK/$name.err" >&2
    exit 1
  fi
  addr=${line#listening on }
}
