#include "pipeline/speculative_decoder.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>

namespace swarm {
namespace {

double seconds_since(Clock::time_point origin, Clock::time_point t) {
  return std::chrono::duration<double>(t - origin).count();
}

struct InFlight {
  uint64_t id = 0;
  ChainRun run;
  Clock::time_point sent;
};

// Goodput windows: at least this many tokens and this long, or this many tokens.
constexpr int kWindowMinTokens = 4;
constexpr double kWindowMinSeconds = 0.5;
constexpr int kWindowMaxTokens = 16;
// Drafts per shadow chain (`auto`, decoding plainly): each plain step judges one,
// and a chain reaches the controller when it ends, so short chains keep the
// estimates current within a round trip or two. A shadow chain that held is
// followed by one at the positions after it (SpecState's positions), so runs
// of held drafts are measured as deep as they go.
constexpr int kShadowDrafts = 2;
// EWMA weight of a new link delay estimate.
constexpr double kLinkWeight = 0.25;

// Fills the controller's view of the chain into `r` (see SpeculationReport), for
// the width its last plan chose (0: none yet, the rule).
void report_view(const SpeculationMemory::Snapshot& mem, const SpecConfig& c,
                 const std::vector<std::string>& addresses, const SpeculationOptions& options,
                 int width, SpeculationReport& r) {
  std::vector<double> bottleneck(c.max_width, 0);
  double sum_t1 = 0;
  for (const StageTimes& t : mem.times.chain_times(addresses)) {
    const std::vector<double> table = stage_time_table(t, c.max_width, c.assumed_slope);
    if (table.empty()) return;  // a stage not measured yet
    sum_t1 += table[0];
    for (int b = 0; b < c.max_width; ++b) bottleneck[b] = std::max(bottleneck[b], table[b]);
  }
  r.width = width > 0 ? std::min(width, c.max_width) : width_for(bottleneck, c.width_slack);
  r.bottleneck_s = bottleneck[r.width - 1];
  r.round_trip_s =
      sum_t1 + std::max(0.0, mem.link_delay_s) * static_cast<double>(addresses.size() + 1);
  r.in_flight = in_flight_for(r.round_trip_s, r.bottleneck_s, 0, c.max_in_flight);
  r.drafts_per_round_trip = std::min(r.width * r.in_flight - 1, options.max_draft);
  r.acceptance = acceptance_rate(mem.state, c);
  r.goodput_bound =
      goodput_bound(r.acceptance, r.drafts_per_round_trip, r.round_trip_s, r.width, r.bottleneck_s);
}

}  // namespace

Status decode_speculatively(ChainSession& session, Drafter& drafter,
                            const SpeculationOptions& options, SpeculationMemory& memory,
                            std::vector<int32_t>& fed, int32_t& anchor,
                            const std::function<bool(int32_t)>& emit,
                            const std::function<int()>& remaining, SpeculationReport& stats) {
  const SpecConfig& config = options.controller;
  SpeculationMemory::Snapshot mem = memory.get();
  std::vector<std::string> addresses;
  for (const ChainStage& s : session.chain()) addresses.push_back(s.address);
  const Clock::time_point origin = memory.origin();
  Clock& clock = session.clock();
  stats.drafter = drafter.name();

  std::deque<InFlight> runs;               // in step id order, each continuing the one before
  bool have_anchor = true;                 // false: the next run continues the last one in flight
  // The last token emitted is fed.back(), not `anchor`: a run whose drafts
  // all held was folded into fed while later runs are still in flight.
  bool anchor_in_fed = false;
  int chain_sent = 0, chain_accepted = 0;  // drafts since the last verified point
  // The goodput window being measured.
  Clock::time_point window_start = clock.now();
  int window_tokens = 0;
  bool window_speculative = false;
  // A probe's window is open: it is measured to its end, whatever the plans
  // of the chains in it (after a rejection, the next may carry no draft).
  bool probing = false;
  bool stopped = false;
  int planned_width = 0;  // the last plan's, for the report
  // With `auto`, drafts proposed but not sent while decoding plainly, judged
  // against the tokens that come back, so the controller's acceptance stays
  // current without speculating (n-gram drafts cost next to nothing).
  const bool shadowing = options.mode == SpeculationMode::kAuto;
  std::vector<int32_t> shadow;
  size_t shadow_matched = 0;
  // Drafts that held in a row before the next one (PipelineMeasurements::
  // held_in_a_row), real or shadow; a rejection, or a step the drafter had
  // no guess for, ends the run.
  int held_in_a_row = 0;
  // Judged drafts go to the controller at the positions after the run
  // before them, and the run goes on if all held.
  auto judged = [&](int sent, int accepted) {
    mem.state = observe(mem.state, config, DraftOutcome{sent, accepted, held_in_a_row});
    held_in_a_row = accepted == sent ? held_in_a_row + accepted : 0;
  };

  // Tokens beyond `fed` that the runs in flight carry (the anchor first).
  auto unverified = [&] {
    std::vector<int32_t> t;
    if (have_anchor && runs.empty()) t.push_back(anchor);
    for (const InFlight& f : runs) t.insert(t.end(), f.run.tokens.begin(), f.run.tokens.end());
    return t;
  };
  auto context = [&] {
    std::vector<int32_t> c = fed;
    const std::vector<int32_t> u = unverified();
    c.insert(c.end(), u.begin(), u.end());
    return c;
  };
  auto unverified_drafts = [&] {
    int n = 0;
    for (const InFlight& f : runs) n += f.run.n_drafts;
    return n;
  };
  auto close_window = [&](Clock::time_point now, bool force) {
    const double secs = std::chrono::duration<double>(now - window_start).count();
    const bool full = window_tokens >= kWindowMaxTokens ||
                      (window_tokens >= kWindowMinTokens && secs >= kWindowMinSeconds);
    if (!full && !force) return;
    if (window_tokens > 0 && secs > 0) {
      mem.state = observe(mem.state, config,
                          GoodputWindow{window_speculative, static_cast<double>(window_tokens),
                                        secs, seconds_since(origin, now)});
    }
    probing = false;
    window_start = now;
    window_tokens = 0;
  };
  auto send = [&](ChainRun run) -> Status {
    auto id = session.send_run(run);
    if (!id.ok()) return id.status();
    stats.runs++;
    stats.drafted += run.n_drafts;
    runs.push_back({*id, std::move(run), clock.now()});
    return Status::Ok();
  };
  // The drafter's guess of up to n tokens, counted: how often it has one at
  // all, and whether one follows another, is what a model of it needs beside
  // how its drafts hold.
  int64_t last_asked = -1;  // the latest position asked at, and whether it had a guess
  bool last_guessed = false;
  auto propose = [&](int n) -> Result<DraftProposal> {
    const std::vector<int32_t> c = context();
    auto p = drafter.propose(c, n);
    if (p.ok()) {
      const bool guessed = !p->tokens.empty();
      ++stats.proposals;
      if (!guessed) ++stats.empty_proposals;
      const int64_t at = static_cast<int64_t>(c.size());
      if (at > last_asked) {
        if (last_asked >= 0 && last_guessed) {
          ++stats.proposals_after_guess;
          if (guessed) ++stats.guesses_after_guess;
        }
        last_asked = at;
        last_guessed = guessed;
      }
    }
    return p;
  };
  auto cancel_all = [&]() -> Status {
    if (runs.empty()) return Status::Ok();
    stats.cancelled_runs += static_cast<int>(runs.size());
    const Status st = session.cancel(runs.front().id, runs.back().id);
    runs.clear();
    return st;
  };
  // Leaves fed + anchor as what a replay must rebuild, whatever was in flight.
  auto fail = [&](Status st) {
    // While the anchor's own run is in flight, the anchor is not in fed yet:
    // fed + anchor is already right (taking fed.back() then would make the
    // replay yield the anchor again, emitted twice).
    if (anchor_in_fed) {
      anchor = fed.back();
      fed.pop_back();
      anchor_in_fed = false;
    }
    have_anchor = true;
    memory.put(mem);
    return st;
  };

  while (!stopped) {
    // The plan for the next runs, from what has been measured.
    PipelineMeasurements m;
    m.shadow_acceptance = shadowing;
    m.held_in_a_row = held_in_a_row;
    m.stages = mem.times.chain_times(addresses);
    if (mem.link_delay_s >= 0) m.link_delay_s.assign(addresses.size() + 1, mem.link_delay_s);
    const double now_s = seconds_since(origin, clock.now());
    auto plan = swarm::plan(mem.state, config, m, now_s);
    if (!plan.ok()) return fail(plan.status());
    const bool forced = options.mode != SpeculationMode::kAuto;
    const int width = std::max(1, plan->width);
    planned_width = width;
    const int in_flight = std::max(1, plan->max_in_flight);
    const bool speculate = forced ? width * in_flight > 1 : plan->speculate;
    // A probe on stale estimates sends full width; otherwise the plan's drafts.
    const bool full_width = forced || (plan->probe && !shadowing);
    int max_drafts = 0;
    if (speculate) max_drafts = full_width ? width * in_flight - 1 : plan->drafts;
    max_drafts = std::min({max_drafts, options.max_draft, remaining() - 1});
    if (speculate && !shadow.empty()) {
      // The shadow chain's drafts judged so far held: they count as such.
      const int held = static_cast<int>(shadow_matched);
      if (held > 0) judged(held, held);
      shadow.clear();
    }
    spdlog::debug("plan: {} (k {}, W {}, drafts {}, gain {:.2f}); {} runs in flight", plan->reason,
                  width, in_flight, max_drafts, plan->predicted_gain, runs.size());
    // With `auto`, every step while the controller speculates (or probes)
    // counts toward speculation's goodput, those it sends without drafts
    // included: after a rejection the next draft may not be worth sending
    // where deeper ones are, and speculation is judged by all it delivers
    // against plain decoding.
    const bool speculative_window =
        speculate || (!forced && (probing || mem.state.mode == SpecState::Mode::kSpeculating));
    if (speculative_window != window_speculative) {
      close_window(clock.now(), true);
      window_speculative = speculative_window;
    }
    if (speculate && plan->probe) probing = true;

    // Top up the runs in flight.
    bool ask_again = true;  // false: the drafter had no guess at this point
    if (runs.empty()) {
      ChainRun run;
      run.tokens = {anchor};
      run.position = static_cast<int>(fed.size());
      run.rewind = true;  // stages past the verified length roll back
      DraftProposal drafts;
      if (max_drafts > 0) {
        auto p = propose(max_drafts);
        if (!p.ok()) return fail(p.status());
        drafts = std::move(*p);
      } else if (shadowing && shadow.empty()) {
        const int n = std::min({kShadowDrafts, options.max_draft, remaining() - 1});
        if (n > 0) {
          auto p = propose(n);
          if (!p.ok()) return fail(p.status());
          shadow = std::move(p->tokens);
          shadow_matched = 0;
        }
      }
      const int n = static_cast<int>(drafts.tokens.size());
      const int first = std::min(n, width - 1);
      run.tokens.insert(run.tokens.end(), drafts.tokens.begin(), drafts.tokens.begin() + first);
      run.n_drafts = first;
      if (!drafts.probs.empty())
        run.probs.assign(drafts.probs.begin(), drafts.probs.begin() + first);
      int pos = run.position + 1 + first;
      if (Status st = send(std::move(run)); !st.ok()) return fail(st);
      have_anchor = false;
      for (int at = first; at < n && static_cast<int>(runs.size()) < in_flight; at += width) {
        const int len = std::min(width, n - at);
        ChainRun cont;
        cont.tokens.assign(drafts.tokens.begin() + at, drafts.tokens.begin() + at + len);
        if (!drafts.probs.empty())
          cont.probs.assign(drafts.probs.begin() + at, drafts.probs.begin() + at + len);
        cont.n_drafts = len;
        cont.position = pos;
        cont.continues_previous = true;
        pos += len;
        if (Status st = send(std::move(cont)); !st.ok()) return fail(st);
      }
      ask_again = n > 0;
    }
    if (speculate && ask_again) {
      // Up to W runs, not one per verdict: a chain that began with fewer
      // (a short guess, a narrower plan) fills the pipeline as soon as the
      // drafter has more, instead of keeping its first depth to the end.
      // Runs shorter than k (short guesses) fill less of it than the W runs
      // of k tokens the plan counted on: then more runs go, up to the
      // controller's most, until W x k tokens are in flight.
      auto room_for_a_run = [&] {
        int tokens = 0;
        for (const InFlight& f : runs) tokens += static_cast<int>(f.run.tokens.size());
        const int count = static_cast<int>(runs.size());
        return count < in_flight || (count < config.max_in_flight && tokens < in_flight * width);
      };
      while (room_for_a_run()) {
        const int room = std::min(width, max_drafts - unverified_drafts());
        if (room <= 0) break;
        auto p = propose(room);
        if (!p.ok()) return fail(p.status());
        if (p->tokens.empty()) break;
        ChainRun cont;
        cont.tokens = p->tokens;
        cont.probs = p->probs;
        cont.n_drafts = static_cast<int>(p->tokens.size());
        cont.position = runs.back().run.position + static_cast<int>(runs.back().run.tokens.size());
        cont.continues_previous = true;
        if (Status st = send(std::move(cont)); !st.ok()) return fail(st);
      }
    }

    // The oldest run's verdict.
    const uint64_t first_id = runs.front().id, last_id = runs.back().id;
    auto result = session.next_result([&](uint64_t id) { return id >= first_id && id <= last_id; });
    if (!result.ok()) return fail(result.status());
    if (result->step_id() != first_id)
      return fail(Status::Internal("step " + std::to_string(result->step_id()) +
                                   " answered before step " + std::to_string(first_id)));
    const auto now = clock.now();
    InFlight done = std::move(runs.front());
    runs.pop_front();

    // Measurements: every stage's compute time for its batch, and what the
    // links took (the round trip less the time spent in stages).
    double in_stages = 0;
    for (const v1::StageTiming& t : result->timings()) {
      mem.times.observe(t.address(), t.batch_tokens(), t.compute_us());
      in_stages += (t.compute_us() + t.queue_us()) * 1e-6;
    }
    const double links = std::max(0.0, seconds_since(done.sent, now) - in_stages) /
                         static_cast<double>(addresses.size() + 1);
    mem.link_delay_s =
        mem.link_delay_s < 0 ? links : (1 - kLinkWeight) * mem.link_delay_s + kLinkWeight * links;

    const int n_drafts = done.run.n_drafts;
    const int accepted = n_drafts > 0 ? std::clamp(result->accepted_drafts(), 0, n_drafts) : 0;
    if (result->tokens_size() != accepted + 1)
      return fail(Status::Internal(session.chain().back().address + " returned " +
                                   std::to_string(result->tokens_size()) + " tokens for " +
                                   std::to_string(accepted) + " accepted drafts"));
    spdlog::debug("verdict: run {} of {} tokens ({} drafts), {} accepted, {:.1f} ms", done.id,
                  done.run.tokens.size(), n_drafts, accepted, 1e3 * seconds_since(done.sent, now));
    const int lead = static_cast<int>(done.run.tokens.size()) - n_drafts;
    fed.insert(fed.end(), done.run.tokens.begin(), done.run.tokens.begin() + lead + accepted);
    stats.accepted += accepted;
    ++(n_drafts > 0 ? stats.speculative_steps : stats.plain_steps);
    chain_sent += n_drafts;
    chain_accepted += accepted;
    // Each run's drafts reach the controller with its verdict: a chain whose
    // drafts keep holding teaches it as it goes, not only once it ends.
    if (n_drafts > 0) judged(n_drafts, accepted);

    std::vector<int32_t> out(result->tokens().begin(), result->tokens().end());
    bool shadow_judged = false;  // a shadow chain ended at this verdict
    if (n_drafts == 0 && !shadow.empty()) {
      // A plain step judges the next shadow draft, as the last stage would have.
      const bool held = out.back() == shadow[shadow_matched];
      if (held) ++shadow_matched;
      if (!held || shadow_matched == shadow.size()) {
        judged(static_cast<int>(shadow.size()), static_cast<int>(shadow_matched));
        ++stats.shadow_chains;
        shadow.clear();
        shadow_judged = true;
      }
    }
    const bool rejected = accepted < n_drafts;
    // A failed cancel fails the session, but only after this verdict's tokens
    // are out: the replay starts after them.
    Status cancelled = Status::Ok();
    if (rejected || runs.empty()) {
      // The chain ends here: the token after the accepted drafts is known.
      if (rejected) cancelled = cancel_all();
      anchor = out.back();
      anchor_in_fed = false;
      have_anchor = true;
      // A plain step, and no guess to judge: the run of held drafts is over.
      if (chain_sent == 0 && shadow.empty() && !shadow_judged) held_in_a_row = 0;
      ++stats.chains;
      if (chain_sent > 0) {
        ++stats.draft_chains;
        if (chain_accepted > 0) ++stats.chains_first_held;
        if (chain_accepted == chain_sent) ++stats.chains_all_held;
      }
      chain_sent = chain_accepted = 0;
    } else {
      // Every draft held and the next run judges the token after them: the
      // token sampled here is not used.
      out.pop_back();
      anchor_in_fed = true;
    }
    for (int32_t t : out) {
      ++window_tokens;
      if (!emit(t)) {
        stopped = true;
        break;
      }
    }
    if (stopped) {
      (void)cancel_all();
      break;
    }
    close_window(now, false);
    if (remaining() <= 0) break;
    if (!cancelled.ok()) return fail(cancelled);
  }
  (void)cancel_all();
  report_view(mem, config, addresses, options, planned_width, stats);
  memory.put(mem);
  return Status::Ok();
}

}  // namespace swarm
