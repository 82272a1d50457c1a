#!/usr/bin/env bash
# Soak: honest load through a two-node swarm, first alone, then while hostile
# callers (bench/hostile_client.cc: huge steps, huge contexts, a thousand hops,
# NaN states, garbage bytes, long prompts, idle sessions, a stream that never
# reads) attack both nodes for the same time. Prints JSON lines: the honest
# throughput of each run, their ratio (goal >= 0.9), the CPU the swarm (nodes
# and gateway) spent per honest token and how busy it kept its cores (what
# the attacks cost, read beside the throughput a drifting machine blurs), the
# nodes' and the
# gateway's peak RSS and thread counts, and whether every process exited by
# itself when told to (a node that must be killed is a bug).
#   bench/soak_bench.sh [BUILD] [SECONDS per run, default 600] [STREAMS, default 4] [ATTACKS]
# ATTACKS: hostile_client's --attacks list (default: every kind but "prompt",
# which is heavy honest-looking use rather than an attack; add it to see how
# the nodes share compute with a caller that sends long prompts non-stop).
#
# Cores: on a machine with two or more, the swarm (nodes, gateway, honest
# load) runs on one set of cores and the attackers on the rest (a quarter,
# at least one), in both runs, so the ratio measures what the attacks cost the
# nodes and not the attackers' own CPU (a real attacker computes on its own
# machine). SOAK_PINNING=off shares every core. The "pinning" field says which.
#
# Addresses: the attackers connect from SOAK_ATTACKER_ADDRESS (default
# 127.0.0.2), a stranger's address; the gateway and this script's own calls
# come from 127.0.0.1, the machine itself, which nodes do not count against
# their per-address connection limits (net/connection_limiter.h).
# SOAK_ATTACKER_ADDRESS=127.0.0.1 attacks from the machine's own address.
set -euo pipefail
BUILD=${1:-build}
SECONDS_PER_RUN=${2:-600}
STREAMS=${3:-4}
ATTACKS=${4:-huge,hops,nan,garbage,hog,mute}
FROM=${SOAK_ATTACKER_ADDRESS:-127.0.0.2}
SWARM="$BUILD/swarm"
HOSTILE="$BUILD/bench/hostile_client"
WORK="$BUILD/bench-soak"
MODEL="$(dirname "$0")/../models/kjv-target-Q8_0.gguf"
mkdir -p "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -x "$HOSTILE" ] || { echo "soak_bench.sh: build $HOSTILE first (cmake --build $BUILD)" >&2; exit 2; }

# The cores this script may use, as a list of numbers ("0-2,5" -> 0 1 2 5).
cpu_list() {
  local part out=()
  IFS=, read -ra parts <<<"$(taskset -cp $$ | sed 's/.*: *//')"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  echo "${out[@]}"
}
ATTACKER=()  # the command prefix that runs an attacker on its cores
PINNING='"none"'
if [ "${SOAK_PINNING:-on}" != off ] && command -v taskset >/dev/null; then
  read -ra cpus <<<"$(cpu_list)"
  if [ ${#cpus[@]} -ge 2 ]; then
    n_attack=$(( ${#cpus[@]} / 4 > 0 ? ${#cpus[@]} / 4 : 1 ))
    swarm_cpus=$(IFS=,; echo "${cpus[*]:0:${#cpus[@]}-n_attack}")
    attack_cpus=$(IFS=,; echo "${cpus[*]:${#cpus[@]}-n_attack}")
    # Everything this script starts from here on inherits the swarm's cores.
    taskset -cp "$swarm_cpus" $$ >/dev/null
    ATTACKER=(taskset -c "$attack_cpus")
    PINNING="{\"swarm_cpus\":\"$swarm_cpus\",\"attacker_cpus\":\"$attack_cpus\"}"
  fi
fi

start node-a node -m "$MODEL" --layers 0:4 --listen 127.0.0.1:0 -t 1
A=$addr; PID_A=${pids[-1]}
start node-b node -m "$MODEL" --layers 4:8 --listen 127.0.0.1:0 -t 1
B=$addr; PID_B=${pids[-1]}
start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 --peers "$A,$B" --speculate off
URL="http://$addr"; PID_G=${pids[-1]}
INFO=$("$SWARM" info "$B")
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$INFO"; }
MODEL_ID=$(field model_id); N_LAYER=$(field n_layer); D_MODEL=$(field d_model)

# Honest load for $1 seconds; prints the tokens it got and the nanoseconds it took.
honest() {
  local end=$((SECONDS + $1)) tokens=0 start_ns line rate wall
  start_ns=$(date +%s%N)
  while [ $SECONDS -lt $end ]; do
    line=$("$SWARM" loadgen --url "$URL" -c "$STREAMS" -r $((2 * STREAMS)) -n 32 --json 2>>"$WORK/loadgen.err") || true
    rate=$(sed -n 's/.*"aggregate_tok_s":\([0-9.]*\).*/\1/p' <<<"$line")
    wall=$(sed -n 's/.*"wall_s":\([0-9.]*\).*/\1/p' <<<"$line")
    [ -n "$rate" ] && tokens=$(awk -v t="$tokens" -v r="$rate" -v w="$wall" 'BEGIN{print t + r * w}')
  done
  echo "$tokens $(( $(date +%s%N) - start_ns ))"
}
status_of() {  # FIELD PID -> its value in /proc/PID/status (0 once gone)
  # Bash builtins only: the thread monitor below calls this every second
  # during attacked phases, and a fork per call would be work of its own.
  local k v rest
  while read -r k v rest; do
    [ "$k" = "$1:" ] && { echo "${v:-0}"; return; }
  done <"/proc/$2/status" 2>/dev/null
  echo 0
}
node_threads() { echo $(( $(status_of Threads "$PID_A") + $(status_of Threads "$PID_B") )); }
# CPU ticks (user + system) the nodes and the gateway used so far: with the
# honest tokens of a phase, what each token cost the swarm, attacks included.
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
swarm_ticks() { echo $(( $(ticks_of "$PID_A") + $(ticks_of "$PID_B") + $(ticks_of "$PID_G") )); }
# The swarm's first core as the kernel counts it ("user+system irq+softirq
# steal idle", in ticks): time taken from the swarm by anything but its own
# processes (the kernel's network work for the attackers' traffic, or a
# hypervisor) shows here and not in the processes' ticks.
SWARM_CORE=$(taskset -cp $$ | sed 's/.*: *//; s/[-,].*//')
core_ticks() {
  awk -v c="cpu$SWARM_CORE" '$1 == c {print $2 + $3 + $4, $7 + $8, $9, $5 + $6}' /proc/stat
}
declare -A core=([clean_busy]=0 [clean_irq]=0 [clean_steal]=0 [clean_idle]=0
                 [attacked_busy]=0 [attacked_irq]=0 [attacked_steal]=0 [attacked_idle]=0)
add_core() {  # PHASE "before" "after"
  local b=($2) e=($3)
  core[$1_busy]=$(( ${core[$1_busy]} + e[0] - b[0] )); core[$1_irq]=$(( ${core[$1_irq]} + e[1] - b[1] ))
  core[$1_steal]=$(( ${core[$1_steal]} + e[2] - b[2] )); core[$1_idle]=$(( ${core[$1_idle]} + e[3] - b[3] ))
}
core_shares() {  # PHASE -> "\"core\":{...}": shares of the swarm's first core's time
  awk -v u="${core[$1_busy]}" -v i="${core[$1_irq]}" -v s="${core[$1_steal]}" -v d="${core[$1_idle]}" \
    'BEGIN{t = u + i + s + d; if (t == 0) t = 1;
      printf "\"swarm_core\":{\"processes\":%.3f,\"irq\":%.3f,\"steal\":%.3f,\"idle\":%.3f}", u / t, i / t, s / t, d / t}'
}
# Per process too ("A B G" in ticks), to see which one an attack costs.
each_ticks() { echo "$(ticks_of "$PID_A") $(ticks_of "$PID_B") $(ticks_of "$PID_G")"; }
declare -A spent=([clean_a]=0 [clean_b]=0 [clean_g]=0 [attacked_a]=0 [attacked_b]=0 [attacked_g]=0)
add_spent() {  # PHASE "A0 B0 G0" "A1 B1 G1"
  local b=($2) e=($3)
  spent[$1_a]=$(( ${spent[$1_a]} + e[0] - b[0] ))
  spent[$1_b]=$(( ${spent[$1_b]} + e[1] - b[1] ))
  spent[$1_g]=$(( ${spent[$1_g]} + e[2] - b[2] ))
}
cpu_seconds() {  # PHASE -> "\"cpu_s_a\":..,\"cpu_s_b\":..,\"cpu_s_gateway\":.."
  awk -v a="${spent[$1_a]}" -v b="${spent[$1_b]}" -v g="${spent[$1_g]}" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "\"cpu_s_a\":%.2f,\"cpu_s_b\":%.2f,\"cpu_s_gateway\":%.2f", a / hz, b / hz, g / hz}'
}
# Waits (up to 60 s) until neither node has steps queued: an attack's backlog
# is not left to slow the clean phase after it.
settle() {
  local end=$((SECONDS + 60)) node
  for node in "$A" "$B"; do
    while [ $SECONDS -lt $end ] && ! "$SWARM" info "$node" 2>/dev/null | grep -q '"queued_steps":0'; do
      sleep 0.2
    done
  done
}

# Clean and attacked phases alternate, PHASE seconds each, until each had
# SECONDS: load elsewhere on the machine (which comes and goes) then weighs on
# both alike. Attackers start afresh each attacked phase and attack 5 s past
# it, so the phase's last loadgen run (which may overrun) is attacked too.
PHASE=${SOAK_PHASE_S:-30}
clean_tokens=0; clean_ns=0; attacked_tokens=0; attacked_ns=0; clean_ticks=0; attacked_ticks=0
threads_clean=0; phases=0
: >"$WORK/threads.txt"
: >"$WORK/hostile-a.json"; : >"$WORK/hostile-b.json"
for ((done_s = 0; done_s < SECONDS_PER_RUN; done_s += PHASE)); do
  len=$(( SECONDS_PER_RUN - done_s < PHASE ? SECONDS_PER_RUN - done_s : PHASE ))
  t0=$(swarm_ticks); e0=$(each_ticks); c0=$(core_ticks)
  read -r t ns <<<"$(honest "$len")"
  clean_ticks=$((clean_ticks + $(swarm_ticks) - t0)); add_spent clean "$e0" "$(each_ticks)"
  add_core clean "$c0" "$(core_ticks)"
  clean_tokens=$(awk -v a="$clean_tokens" -v b="$t" 'BEGIN{print a + b}'); clean_ns=$((clean_ns + ns))
  t=$(node_threads); [ "$t" -gt "$threads_clean" ] && threads_clean=$t
  "${ATTACKER[@]}" "$HOSTILE" --target "$A" --model-id "$MODEL_ID" --first 0 --last 4 --n-layer "$N_LAYER" \
    --seconds "$((len + 5))" --attacks "$ATTACKS" --from "$FROM" >>"$WORK/hostile-a.json" 2>>"$WORK/hostile-a.err" &
  HA=$!; pids+=($HA)
  "${ATTACKER[@]}" "$HOSTILE" --target "$B" --model-id "$MODEL_ID" --first 4 --last 8 --n-layer "$N_LAYER" \
    --d-model "$D_MODEL" --seconds "$((len + 5))" --attacks "$ATTACKS" --from "$FROM" >>"$WORK/hostile-b.json" 2>>"$WORK/hostile-b.err" &
  HB=$!; pids+=($HB)
  # The thread monitor is measurement, not swarm: it runs on the attackers'
  # cores, so that the attacked phases carry no work the clean ones lack (a
  # hog-only run, the attack that costs the nodes nothing, showed 0.91 with it
  # on the swarm's core).
  ( while running $HA; do node_threads; sleep 1; done ) >>"$WORK/threads.txt" &
  pids+=($!)
  [ ${#ATTACKER[@]} -gt 0 ] && taskset -cp "${ATTACKER[2]}" $! >/dev/null
  t0=$(swarm_ticks); e0=$(each_ticks); c0=$(core_ticks)
  read -r t ns <<<"$(honest "$len")"
  attacked_ticks=$((attacked_ticks + $(swarm_ticks) - t0)); add_spent attacked "$e0" "$(each_ticks)"
  add_core attacked "$c0" "$(core_ticks)"
  attacked_tokens=$(awk -v a="$attacked_tokens" -v b="$t" 'BEGIN{print a + b}'); attacked_ns=$((attacked_ns + ns))
  wait $HA $HB || true
  settle
  phases=$((phases + 1))
done
rate() { awk -v t="$1" -v ns="$2" 'BEGIN{printf "%.2f", (ns > 0 ? t / (ns / 1e9) : 0)}'; }
# Milliseconds of swarm CPU (nodes and gateway) per honest token, and the
# share of the phase's wall time the swarm was on a CPU.
cpu_per_token() { awk -v k="$1" -v t="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.3f", (t > 0 ? 1000 * k / hz / t : 0)}'; }
busy() { awk -v k="$1" -v ns="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.3f", (ns > 0 ? (k / hz) / (ns / 1e9) : 0)}'; }
clean=$(rate "$clean_tokens" "$clean_ns"); attacked=$(rate "$attacked_tokens" "$attacked_ns")
max_threads=$(sort -n "$WORK/threads.txt" | tail -1)
running "$PID_A" && running "$PID_B" && alive=true || alive=false
rss_a=$(status_of VmHWM "$PID_A"); rss_b=$(status_of VmHWM "$PID_B"); rss_g=$(status_of VmHWM "$PID_G")
threads_g=$(status_of Threads "$PID_G")
load=$(cut -d' ' -f1-3 /proc/loadavg)
# Stops everything now, to see that every process exits when told to.
stop_all
echo "{\"bench\":\"soak\",\"label\":\"clean\",\"seconds\":$SECONDS_PER_RUN,\"phases\":$phases,\"streams\":$STREAMS,\"pinning\":$PINNING,\"honest_tok_s\":$clean,\"swarm_cpu_ms_per_token\":$(cpu_per_token "$clean_ticks" "$clean_tokens"),\"swarm_cpu_busy\":$(busy "$clean_ticks" "$clean_ns"),$(cpu_seconds clean),$(core_shares clean),\"threads\":$threads_clean}"
echo "{\"bench\":\"soak\",\"label\":\"attacked\",\"attacks\":\"$ATTACKS\",\"attacker_address\":\"$FROM\",\"seconds\":$SECONDS_PER_RUN,\"phases\":$phases,\"streams\":$STREAMS,\"pinning\":$PINNING,\"honest_tok_s\":$attacked,\"swarm_cpu_ms_per_token\":$(cpu_per_token "$attacked_ticks" "$attacked_tokens"),\"swarm_cpu_busy\":$(busy "$attacked_ticks" "$attacked_ns"),$(cpu_seconds attacked),$(core_shares attacked),\"max_threads\":${max_threads:-0},\"peak_rss_kb_a\":$rss_a,\"peak_rss_kb_b\":$rss_b,\"peak_rss_kb_gateway\":$rss_g,\"gateway_threads\":$threads_g,\"nodes_alive\":$alive,\"forced_kills\":$forced_kills,\"loadavg_at_end\":\"$load\"}"
awk -v a="$attacked" -v c="$clean" 'BEGIN{printf "{\"bench\":\"soak\",\"label\":\"ratio\",\"attacked_over_clean\":%.3f}\n", (c > 0 ? a / c : 0)}'
cat "$WORK/hostile-a.json" "$WORK/hostile-b.json"
