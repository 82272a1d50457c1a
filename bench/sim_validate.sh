#!/usr/bin/env bash
# Is the simulator right about this machine? The same configurations run for
# real on 127.0.0.1 and in `swarm sim` with this machine's measured stage time
# t(b) (see SIM_TB): 2 and 4 stages, one-way link delays of 0, 20 and 100 ms,
# 1 and 16 streams, with and without speculation (ngram; auto, the gateway's
# default, at 100 ms), a slowed stage
# (--slowdown 4), and a kill -9 of a stage mid-run with a twin to fail over to.
# Each configuration prints one JSON line: the real and the simulated aggregate
# tokens/s, per-stream decode tokens/s and time to first token, and the
# simulated/real ratio of each (the goal: within 10%, so 0.9 to 1.1), and CPU
# seconds of the real run: the gateway's and the client's, the nodes' next to
# their reported compute time and their batches' CPU time (real_batch_cpu_s);
# and the share of the nodes' compute spent on steps a Cancel covered after
# they ran, real and simulated (speculation's wasted work); and what the
# nodes computed outside their batches per step they handled
# (real_message_overhead_us) and the gateway and client per step answer
# (real_gateway_step_us). SIM_OVERHEADS=measured gives the simulated machine's
# cores those two as well (the default, none, leaves them to the scenario's
# defaults: they did not bring the simulator closer, doc/simulation.md);
# SIM_MESSAGE_OVERHEAD_US and SIM_GATEWAY_STEP_US set them by hand.
# Model: synthetic TinyLlama-1.1B in Q8_0 (as bench/swarm_bench.sh), each node
# on one thread, weights read into memory.
#   bench/sim_validate.sh [BUILD] [TOKENS per request, default 32] [ONLY: a label's substring]
# SIM_AGAIN=FILE (a previous run's output) takes the real side from FILE and
# runs only the simulator again (its t(b) from $BUILD/bench-sim-validate).
# SIM_TB says where the simulator's t(b) comes from: run (the default) takes
# the nodes' own batches during the real run (their CPU time per layer, from
# their debug log: it follows this machine's speed at the time and includes
# what the other processes' memory traffic costs), beyond their largest batch
# the bench's; bench takes `swarm bench` right before and right after the run.
# SIM_DRAFTS says how the simulated drafter drafts (see run_sim): trace (the
# default) replays what the real n-gram drafter drafts on the real text;
# tokens makes each draft hold independently at the per-token acceptance the
# real gateway measured; runs as the real drafts held in runs, as often as the
# real drafter had a guess and as its guesses followed each other.
set -euo pipefail
case "${SIM_TB:=run}" in
  run | bench) ;;
  *) echo "SIM_TB=$SIM_TB: give run or bench" >&2; exit 2 ;;
esac
case "${SIM_OVERHEADS:=none}" in
  none | measured) ;;
  *) echo "SIM_OVERHEADS=$SIM_OVERHEADS: give none or measured" >&2; exit 2 ;;
esac
case "${SIM_DRAFTS:=trace}" in
  trace | tokens | runs) ;;
  *) echo "SIM_DRAFTS=$SIM_DRAFTS: give trace, tokens or runs" >&2; exit 2 ;;
esac
BUILD=${1:-build}
TOKENS=${2:-32}
ONLY=${3:-}
SWARM="$BUILD/swarm"
WORK="$BUILD/bench-sim-validate"
MODEL="$BUILD/models/tinyllama-1.1b-Q8_0.gguf"
N_LAYER=22
PROMPT="The licensee may copy and distribute verbatim copies of the Program's source code"
mkdir -p "$BUILD/models" "$WORK"
source "$(dirname "$0")/../scripts/procs.sh"
[ -f "$MODEL" ] || "$SWARM" synth --shape tinyllama-1.1b --type Q8_0 --seed 1 -o "$MODEL" >&2

# This machine's t(b), measured right before and right after each real run
# (this kind of machine's speed moves by half from one minute to the next, so
# one measurement for the whole script would not describe every run): per-layer
# time of decode batches and prompt chunks on one thread, the mean of the two.
# As TOML points: a layer's time per batch size (decode batches up to 32
# tokens, prompt chunks beyond), the head's over its rows (decode batches).
CORES=$(nproc)
measure_tb() {  # FILE
  "$SWARM" bench -m "$MODEL" -t 1 --no-mmap --batch-sizes 1,4,16,32 --prefill-chunks 64,128 \
    --context 32 -r 5 --json >"$1"
}
points() {  # FILE FIELD KIND -> [[b, s], ...], the mean of FILE's and FILE.after's points
  paste -d'\n' "$1" "$1.after" | awk -v f="$2" -v kind="$3" -F'[:,}]' '
    $0 ~ "\"kind\":\"" kind "\"" {
      for (i = 1; i < NF; i++) { if ($i ~ /"tokens"/) b = $(i + 1); if ($i ~ "\"" f "\"") t = $(i + 1) }
      if (b in sum) { out = out (out == "" ? "" : ", ") "[" b ", " (sum[b] + t) / 2 "]" } else sum[b] = t }
    END { print out }'
}
# This machine's t(b) as the nodes ran it during the real run (their batches'
# CPU time, FILE.run: "tokens seconds-per-layer" lines), in bins of batch size
# around powers of two (the mean tokens and time of each), then BENCH's points
# (measure_tb) beyond the largest batch the run had.
run_points() {  # FILE BENCH -> [b, s], ...
  awk -v bench="$2" '
    { k = int(log($1) / log(2) + 0.5); n[k]++; sb[k] += $1; st[k] += $2; if ($1 > maxb) maxb = $1; if (k > maxk) maxk = k }
    END {
      for (k = 0; k <= maxk; k++)
        if (n[k] > 0) out = out (out == "" ? "" : ", ") sprintf("[%d, %.9g]", sb[k] / n[k] + 0.5, st[k] / n[k])
      gsub(/[][]/, "", bench); m = split(bench, v, /, */)
      for (i = 1; i + 1 <= m; i += 2) if (v[i] + 0 > maxb) out = out ", [" v[i] ", " v[i + 1] "]"
      print out
    }' "$1.run"
}
drift() {  # FILE -> after/before of t(1), the machine's own change during the run
  awk -F'[:,}]' '/"kind":"decode","tokens":1,/ { for (i = 1; i < NF; i++) if ($i ~ /"layer_s"/) v[++n] = $(i + 1) }
    END { printf "%.3f", (n == 2 && v[1] > 0 ? v[2] / v[1] : 0) }' "$1" "$1.after"
}
PROMPT_TOKENS=$("$SWARM" tokenize -m "$MODEL" "$PROMPT" 2>/dev/null | tail -1 | tr ',' '\n' | grep -c .)
# Every real request writes the same text (one prompt, greedy, ignore_eos), so
# what the n-gram drafter drafts at each point of it is fixed: the gateway's
# drafter on the model's own greedy text, up to its 16 drafts
# (--spec-max-draft).
DRAFT_TRACE=$("$SWARM" spec-eval -m "$MODEL" -p "$PROMPT" -n "$TOKENS" -k 16 --trace |
  sed -n 's/.*"trace":\(\[[^]]*\]\).*/\1/p')

metric() {  # URL NAME -> the value of a counter on the gateway's /metrics (0 when absent)
  curl -s "$1/metrics" | awk -v n="$2" '$1 == n {print $2; found=1} END {if (!found) print 0}'
}
field() { sed -n "s/.*\"$1\":\([0-9.eE+-]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v s="$1" -v r="$2" 'BEGIN { printf "%.3f", (r > 0 ? s / r : 0) }'; }
# What else the real run computed on this machine's cores besides the nodes'
# batches: the nodes' CPU outside their batches (gRPC's threads receiving,
# decoding, encoding and sending steps) per step they handled, and the
# gateway's and the client's per step answer. With SIM_OVERHEADS=measured,
# run_sim puts both on the simulated machine's cores. Unmeasured (a kill -9
# run): the scenario's defaults.
overheads() {  # -> sets $message_overhead_us and $gateway_step_us
  message_overhead_us=$(awk -v c="${node_cpu:-0}" -v b="${batch_cpu:-0}" -v n="${node_steps:-0}" \
    'BEGIN { if (c > 0 && n > 0) printf "%.1f", (c > b ? (c - b) / n * 1e6 : 0) }')
  gateway_step_us=$(awk -v g="${gateway_cpu:-0}" -v k="${client_cpu:-0}" -v n="${gateway_steps:-0}" \
    'BEGIN { if (g + k > 0 && n > 0) printf "%.1f", (g + k) / n * 1e6 }')
}

# CPU seconds the processes PIDS... have used (user + system), summed.
cpu_s() {
  local p
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); s += f[12] + f[13] } END { print s / tck }'
}
# Seconds the nodes at ADDRS... have computed since they started (FIELD
# compute_us), or computed for steps a Cancel covered after they ran
# (cancelled_compute_us).
compute_s() {  # FIELD ADDRS...
  local f=$1 a sum=0 us
  shift
  for a in "$@"; do
    us=$("$SWARM" info "$a" 2>/dev/null | sed -n "s/.*\"$f\":\"\{0,1\}\([0-9]*\).*/\1/p")
    sum=$((sum + ${us:-0}))
  done
  awk -v us="$sum" 'BEGIN { print us / 1e6 }'
}
# CPU over the measured run besides the nodes' (which the simulator models):
# the gateway's and the client's; and the nodes' own CPU seconds next to the
# seconds their Info says they spent computing (wall time: with more node
# processes than cores it includes time waiting for one).
run_cpu() {  # -> sets $gateway_cpu, $node_cpu, $node_compute, $cancelled_share
  gateway_cpu=$(awk -v a="$gw_cpu0" -v b="$(cpu_s "$gw_pid")" 'BEGIN { print b - a }')
  node_cpu=$(awk -v c="$(cpu_s "${node_pids[@]}")" -v c0="$node_cpu0" 'BEGIN { print c - c0 }')
  node_compute=$(awk -v k="$(compute_s compute_us "${node_addrs[@]}")" -v k0="$compute0" 'BEGIN { print k - k0 }')
  # The share of that compute spent on steps a Cancel covered once they had run.
  cancelled_share=$(awk -v k="$(compute_s cancelled_compute_us "${node_addrs[@]}")" -v k0="$cancelled0" \
    -v c="$node_compute" 'BEGIN { printf "%.3f", (c > 0 ? (k - k0) / c : 0) }')
}

# One real run: STAGES DELAY_MS STREAMS SPEC(off|ngram|auto) SLOWDOWN KILL(0|1) -> sets $real (loadgen's JSON)
# and $acceptance (accepted / drafted draft tokens; 0 without speculation).
run_real() {
  local stages=$1 delay=$2 streams=$3 spec=$4 slow=$5 kill=$6 peers="" s a b flags victim="" victim_addr=""
  node_pids=() node_addrs=()
  for ((s = 0; s < stages; s++)); do
    a=$((N_LAYER * s / stages)) b=$((N_LAYER * (s + 1) / stages))
    flags=(--link-delay-ms "$delay")
    [ "$s" = 1 ] && [ "$slow" != 1 ] && flags+=(--slowdown "$slow")
    # Its batch lines (debug) give this machine's t(b) during the run (run_points).
    SPDLOG_LEVEL=info,node=debug \
      start "node$s" node -m "$MODEL" --layers "$a:$b" --listen 127.0.0.1:0 -t 1 --no-mmap "${flags[@]}"
    peers+="${peers:+,}$addr"
    node_pids+=("${pids[-1]}") node_addrs+=("$addr")
    if [ "$kill" = 1 ] && [ "$s" = $((stages - 1)) ]; then
      # The last stage's twin; the first of the two to be chosen is killed mid-run.
      victim=${pids[-1]} victim_addr=$addr
      start "twin$s" node -m "$MODEL" --layers "$a:$b" --listen 127.0.0.1:0 -t 1 --no-mmap "${flags[@]}"
      peers+=",$addr"
    fi
  done
  start gateway gateway -m "$MODEL" --listen 127.0.0.1:0 -c 1024 --peers "$peers" \
    --link-delay-ms "$delay" --speculate "$spec" --audit-rate 0 --probation-audit-rate 0 --trust-db "$WORK/trust.db"
  local url="http://$addr"
  gw_pid=${pids[-1]}
  "$SWARM" loadgen --url "$url" -c 1 -r 1 -n 4 --prompt "$PROMPT" >/dev/null  # warm-up
  gw_cpu0=$(cpu_s "$gw_pid") node_cpu0=$(cpu_s "${node_pids[@]}") compute0=$(compute_s compute_us "${node_addrs[@]}")
  cancelled0=$(compute_s cancelled_compute_us "${node_addrs[@]}")
  local log_lines0=()
  for ((s = 0; s < stages; s++)); do log_lines0+=("$(wc -l <"$WORK/node$s.err")"); done
  local drafted0 accepted0 chains0 first0 all0
  drafted0=$(metric "$url" swarm_speculation_drafted_tokens_total)
  accepted0=$(metric "$url" swarm_speculation_accepted_tokens_total)
  chains0=$(metric "$url" swarm_speculation_draft_chains_total)
  first0=$(metric "$url" swarm_speculation_chains_first_held_total)
  all0=$(metric "$url" swarm_speculation_chains_all_held_total)
  local proposals0 empty0 after0 again0
  proposals0=$(metric "$url" swarm_speculation_proposals_total)
  empty0=$(metric "$url" swarm_speculation_empty_proposals_total)
  after0=$(metric "$url" swarm_speculation_proposals_after_guess_total)
  again0=$(metric "$url" swarm_speculation_guesses_after_guess_total)
  kill_after_s=0
  if [ "$kill" = 1 ]; then
    local t0
    t0=$(date +%s%N)
    "$SWARM" loadgen --url "$url" -c "$streams" -r $((2 * streams)) -n "$TOKENS" --prompt "$PROMPT" --json \
      >"$WORK/loadgen.out" &
    local lg=$!
    # Kill once the victim holds a session of the run (it is then mid-request).
    until ! running "$lg" || [ "$("$SWARM" info "$victim_addr" 2>/dev/null | sed -n 's/.*"active_sessions":\([0-9]*\).*/\1/p')" -gt 0 ] 2>/dev/null; do
      sleep 0.02
    done
    kill -9 "$victim" 2>/dev/null || true
    kill_after_s=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { print (b - a) / 1e9 }')
    wait "$lg"
    real=$(cat "$WORK/loadgen.out")
    gateway_cpu=0 client_cpu=0 node_cpu=0 node_compute=0 cancelled_share=0  # not measured with a kill
  else
    local TIMEFORMAT='%U %S' times
    { times=$( { time "$SWARM" loadgen --url "$url" -c "$streams" -r $((2 * streams)) -n "$TOKENS" \
        --prompt "$PROMPT" --json >"$WORK/loadgen.out"; } 2>&1); }
    real=$(cat "$WORK/loadgen.out")
    client_cpu=$(awk '{ print $1 + $2 }' <<<"$times")
    run_cpu
  fi
  # Every batch each stage ran during the measured run: the stage, its layers,
  # the batch's tokens and steps, and the CPU time its compute thread took.
  local batches
  batches=$(for ((s = 0; s < stages; s++)); do
    tail -n +"$((log_lines0[s] + 1))" "$WORK/node$s.err" |
      sed -n 's/.*batch: \([0-9]*\) tokens of \([0-9]*\) steps, .* \([0-9]*\) us CPU of this thread.*/\1 \2 \3/p' |
      awk -v s="$s" -v layers=$(((N_LAYER * (s + 1) / stages) - (N_LAYER * s / stages))) '{ print s, layers, $0 }'
  done)
  # The stages before the last: tokens and CPU time per layer (the head is the
  # last stage's).
  awk -v last=$((stages - 1)) 'NF && $1 < last { print $3, $5 / 1e6 / $2 }' <<<"$batches" >"$TIMES.run"
  # Every stage: the CPU time, the steps, and the last stage's steps (one
  # answer to the gateway each).
  read -r batch_cpu node_steps gateway_steps < <(awk -v last=$((stages - 1)) \
    '{ cpu += $5; steps += $4; if (NF && $1 == last) answers += $4 } END { print cpu / 1e6, steps + 0, answers + 0 }' <<<"$batches")
  local drafted accepted
  drafted=$(metric "$url" swarm_speculation_drafted_tokens_total)
  accepted=$(metric "$url" swarm_speculation_accepted_tokens_total)
  acceptance=$(awk -v d="$drafted" -v d0="$drafted0" -v a="$accepted" -v a0="$accepted0" \
    'BEGIN { print (d - d0 > 0) ? (a - a0) / (d - d0) : 0 }')
  # How drafts hold in runs: a chain's first draft, and a draft after one
  # that held (doc/metrics.md).
  read -r first_held after_hit < <(awk -v a="$accepted" -v a0="$accepted0" \
    -v c="$(metric "$url" swarm_speculation_draft_chains_total)" -v c0="$chains0" \
    -v f="$(metric "$url" swarm_speculation_chains_first_held_total)" -v f0="$first0" \
    -v l="$(metric "$url" swarm_speculation_chains_all_held_total)" -v l0="$all0" \
    'BEGIN { acc = a - a0; ch = c - c0; fh = f - f0; ah = l - l0
             printf "%s %s\n", (ch > 0 ? fh / ch : 0), (acc - ah > 0 ? (acc - fh) / (acc - ah) : 0) }')
  # How often the drafter had a guess at all when asked.
  proposal_rate=$(awk -v p="$(metric "$url" swarm_speculation_proposals_total)" -v p0="$proposals0" \
    -v e="$(metric "$url" swarm_speculation_empty_proposals_total)" -v e0="$empty0" \
    'BEGIN { n = p - p0; print (n > 0 ? 1 - (e - e0) / n : 1) }')
  # How its guesses followed each other: a guess at the next question after
  # one (doc/metrics.md); -1 when it never had a guess to follow.
  guess_after_guess=$(awk -v a="$(metric "$url" swarm_speculation_proposals_after_guess_total)" -v a0="$after0" \
    -v g="$(metric "$url" swarm_speculation_guesses_after_guess_total)" -v g0="$again0" \
    'BEGIN { n = a - a0; print (n > 0 ? (g - g0) / n : -1) }')
  stop_all
}

CONFIGS=(
  # stages delay_ms streams speculate slowdown kill
  "2 0 1 off 1 0" "2 0 16 off 1 0" "2 20 1 off 1 0" "2 20 16 off 1 0" "2 100 1 off 1 0" "2 100 16 off 1 0"
  "4 0 1 off 1 0" "4 0 16 off 1 0" "4 20 1 off 1 0" "4 20 16 off 1 0" "4 100 1 off 1 0" "4 100 16 off 1 0"
  "4 20 1 ngram 1 0" "4 100 1 ngram 1 0" "4 20 16 ngram 1 0" "4 100 1 auto 1 0"
  "4 20 1 off 4 0" "4 20 16 off 4 0"
  "2 20 16 off 1 1"
)
# CONFIG="STAGES DELAY_MS STREAMS SPEC SLOWDOWN KILL" runs that configuration
# alone instead, e.g. "4 20 16 off 40 0": prompts queued past the gateway's
# 60 s step timeout on the only chain there is (doc/failover.md, "Past the
# ceiling").
[ -n "${CONFIG:-}" ] && CONFIGS=("$CONFIG")
# The same configuration in the simulator: one node class per stage (so each
# keeps its range and slowdown), every node computing on this machine's cores,
# one-way delays as the real runs' emulated links, the measured acceptance.
run_sim() {  # STAGES DELAY STREAMS SPEC SLOWDOWN KILL ACCEPTANCE KILL_AFTER_S -> sets $sim
  local stages=$1 delay=$2 streams=$3 spec=$4 slow=$5 kill=$6 acc=$7 kill_at=$8 s a b ranges=""
  local toml="$WORK/scenario.toml"
  {
    echo "name = \"validate\""
    echo "duration_s = 3600"
    echo "window_s = 3600"
    for ((s = 0; s < stages; s++)); do
      a=$((N_LAYER * s / stages)) b=$((N_LAYER * (s + 1) / stages))
      ranges+="${ranges:+, }[$a, $b]"
      [ "$kill" = 1 ] && [ "$s" = $((stages - 1)) ] && ranges+=", [$a, $b]"
    done
    echo "fixed_ranges = [$ranges]"
    [ "$kill" = 1 ] && echo "kills = [{node = $((stages - 1)), at_s = $kill_at, reset = true}]"
    echo "[machine]"
    echo "cores = $CORES"
    local gateway_us=${SIM_GATEWAY_STEP_US:-}
    [ "$SIM_OVERHEADS" = measured ] && gateway_us=${gateway_us:-$gateway_step_us}
    [ -n "$gateway_us" ] && echo "gateway_step_us = $gateway_us"
    echo "[model]"
    echo "name = \"tinyllama-1.1b\""
    echo "layers = $N_LAYER"
    echo "d_model = 2048"
    echo "bytes_per_layer = 5e7"
    echo "[network]"
    echo "regions = [\"loopback\"]"
    echo "rtt_ms = [[$((2 * delay))]]"
    local count
    for ((s = 0; s < stages; s++)); do
      count=1
      [ "$kill" = 1 ] && [ "$s" = $((stages - 1)) ] && count=2
      echo "[[classes]]"
      echo "name = \"stage-$s\""
      echo "count = $count"
      echo "memory_gb = 64"
      echo "uplink_mbps = 100000"
      echo "downlink_mbps = 100000"
      echo "max_batch_tokens = 512"
      local message_us=${SIM_MESSAGE_OVERHEAD_US:-}
      [ "$SIM_OVERHEADS" = measured ] && message_us=${message_us:-$message_overhead_us}
      [ -n "$message_us" ] && echo "message_overhead_us = $message_us"
      echo "layer_time_points = $LAYER_POINTS"
      echo "head_time_points = $HEAD_POINTS"
      [ "$s" = 1 ] && echo "slowdown = $slow"
    done
    echo "[requests]"
    echo "streams = $streams"
    echo "total = $((2 * streams))"
    echo "prompt = $PROMPT_TOKENS"
    echo "output = $TOKENS"
    echo "warmup_output = 4"  # as the real run's warm-up request
    echo "[speculation]"
    echo "max_drafts = 16"  # the gateway's --spec-max-draft
    # SIM_DRAFTS=trace (the default): the real drafter's drafts on the real
    # text (DRAFT_TRACE). SIM_DRAFTS=tokens: each draft holds independently at
    # the measured per-token acceptance (accepted / drafted). SIM_DRAFTS=runs:
    # drafts as the real ones held, a chain's first at first_held and one
    # after a held one at after_hit, and a guess only as often as the real
    # drafter had one (proposal_rate) and as its guesses followed each other
    # (guess_after_guess); with the first two alone the simulator drafted at
    # every step and came out 1.4-2x high.
    if [ "$spec" = off ]; then
      echo "enabled = false"
    else
      echo "enabled = true"
      # ngram: speculation always on (the controller sets width and depth);
      # auto, the gateway's default: the controller also decides whether.
      if [ "$spec" = auto ]; then echo 'mode = "auto"'; else echo 'mode = "always"'; fi
      case "$SIM_DRAFTS" in
        trace) echo "trace = $DRAFT_TRACE" ;;
        runs)
          echo "acceptance = ${first_held:-0}"
          echo "acceptance_after_hit = ${after_hit:-0}"
          echo "proposal_rate = ${proposal_rate:-1}"
          awk -v g="${guess_after_guess:--1}" 'BEGIN { if (g >= 0) print "guess_after_guess = " g }'
          ;;
        tokens) echo "acceptance = $acc" ;;
      esac
    fi
  } >"$toml"
  local out
  out=$("$SWARM" sim "$toml" --json)
  sim=$(grep '"run":true' <<<"$out")
  sim_cancelled_share=$(field cancelled_compute_share "$(grep '"summary":true' <<<"$out")")
}

for config in "${CONFIGS[@]}"; do
  read -r stages delay streams spec slow kill <<<"$config"
  label="$stages stages, $delay ms, $streams streams, speculate $spec, slowdown $slow, kill $kill"
  [ -n "$ONLY" ] && [[ "$label" != *"$ONLY"* ]] && continue
  TIMES="$WORK/tb-$stages-$delay-$streams-$spec-$slow-$kill.jsonl"  # kept for SIM_AGAIN
  if [ -n "${SIM_AGAIN:-}" ]; then
    real=$(grep -F "\"label\":\"$label\"" "$SIM_AGAIN" | sed -e 's/"real_tok_s":/"aggregate_tok_s":/' -e 's/"real_\([a-z_]*\)":/"\1":/g')
    acceptance=$(field acceptance "$real") kill_after_s=$(field kill_after_s "$real")
    gateway_cpu=$(field gateway_cpu_s "$real") client_cpu=$(field client_cpu_s "$real")
    node_cpu=$(field node_cpu_s "$real") node_compute=$(field node_compute_s "$real")
    cancelled_share=$(field cancelled_compute_share "$real")
    batch_cpu=$(field batch_cpu_s "$real") node_steps=$(field node_steps "$real")
    gateway_steps=$(field gateway_steps "$real")
    first_held=$(field first_held "$real") after_hit=$(field after_hit "$real")
    proposal_rate=$(field proposal_rate "$real") guess_after_guess=$(field guess_after_guess "$real")
    kill_after_s=${kill_after_s:-0.5}
    [ -n "$real" ] || continue
  else
    measure_tb "$TIMES"
    run_real "$stages" "$delay" "$streams" "$spec" "$slow" "$kill"
    measure_tb "$TIMES.after"
  fi
  LAYER_POINTS="[$(points "$TIMES" layer_s decode), $(points "$TIMES" layer_s prefill)]"
  # SIM_TB=run (the default): the stages' own t(b) during the run; bench: the
  # bench's before and after it.
  if [ "${SIM_TB:-run}" = run ] && [ -s "$TIMES.run" ]; then
    LAYER_POINTS="[$(run_points "$TIMES" "$LAYER_POINTS")]"
  fi
  HEAD_POINTS="[$(points "$TIMES" head_s decode)]"
  overheads
  run_sim "$stages" "$delay" "$streams" "$spec" "$slow" "$kill" "$acceptance" "$kill_after_s"
  ra=$(field aggregate_tok_s "$real") rs=$(field stream_tok_s "$real") rt=$(field ttft_ms "$real")
  sa=$(field aggregate_tok_s "$sim") ss=$(field stream_tok_s "$sim") st=$(field ttft_ms "$sim")
  printf '{"bench":"sim_validate","label":"%s","stages":%d,"link_delay_ms":%d,"streams":%d,"speculate":"%s","slowdown":%s,"kill":%d,"acceptance":%s,"first_held":%s,"after_hit":%s,"proposal_rate":%s,"guess_after_guess":%s,"drafts_model":"%s","tb":"%s","kill_after_s":%s,"machine_drift":%s,"real_tok_s":%s,"sim_tok_s":%s,"tok_s_ratio":%s,"real_stream_tok_s":%s,"sim_stream_tok_s":%s,"stream_ratio":%s,"real_ttft_ms":%s,"sim_ttft_ms":%s,"ttft_ratio":%s,"real_errors":%s,"real_gateway_cpu_s":%s,"real_client_cpu_s":%s,"real_node_cpu_s":%s,"real_node_compute_s":%s,"real_cancelled_compute_share":%s,"sim_cancelled_compute_share":%s,"real_batch_cpu_s":%s,"real_node_steps":%s,"real_gateway_steps":%s,"real_message_overhead_us":%s,"real_gateway_step_us":%s,"overheads":"%s"}\n' \
    "$label" "$stages" "$delay" "$streams" "$spec" "$slow" "$kill" "$acceptance" "${first_held:-0}" "${after_hit:-0}" "${proposal_rate:-1}" "${guess_after_guess:--1}" "$SIM_DRAFTS" "${SIM_TB:-run}" "${kill_after_s:-0}" "$(drift "$TIMES")" "$ra" "$sa" "$(ratio "$sa" "$ra")" \
    "$rs" "$ss" "$(ratio "$ss" "$rs")" "$rt" "$st" "$(ratio "$st" "$rt")" "$(field errors "$real")" \
    "${gateway_cpu:-0}" "${client_cpu:-0}" "${node_cpu:-0}" "${node_compute:-0}" "${cancelled_share:-0}" "${sim_cancelled_share:-0}" \
    "${batch_cpu:-0}" "${node_steps:-0}" "${gateway_steps:-0}" "${message_overhead_us:-0}" "${gateway_step_us:-0}" "$SIM_OVERHEADS"
done
