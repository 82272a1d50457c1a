# Sourced by scripts that run swarm processes (the demo, tests, benchmarks):
#   start NAME ARGS...   runs "$SWARM ARGS" in the background, waits for its
#                        "listening on HOST:PORT" line and sets $addr to HOST:PORT.
#                        Its stderr goes to $WORK/NAME.err.
# Every process started (and every pid a script adds to `pids`) is stopped
# when the sourcing script exits, by a signal too: SIGTERM, and SIGKILL for one
# still running STOP_GRACE_S (default 30) seconds later (a node drains first;
# one that hangs must not hang the script). `forced_kills` counts those.
# Needs SWARM (the swarm binary) and WORK (a folder for FIFOs and logs).

pids=()
forced_kills=0
running() {  # PID -> whether it runs (a zombie, exited but not yet waited for, does not)
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}
stop_all() {
  local p end=$((SECONDS + ${STOP_GRACE_S:-30}))
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    while running "$p" && [ $SECONDS -lt $end ]; do sleep 0.2; done
    if running "$p"; then
      echo "pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80)) still runs ${STOP_GRACE_S:-30} s after SIGTERM: killed" >&2
      kill -9 "$p" 2>/dev/null || true
      forced_kills=$((forced_kills + 1))
    fi
    wait "$p" 2>/dev/null || true
  done
  pids=()
  rm -f "$WORK"/*.$$.out
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
