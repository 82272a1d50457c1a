#include "sim/request_actor.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <simgrid/s4u.hpp>

#include "pipeline/spec_controller.h"
#include "pipeline/step_deadline.h"
#include "routing/chain.h"
#include "sim/messages.h"
#include "sim/world.h"

namespace swarm::sim {
namespace sg4 = simgrid::s4u;
namespace {

double now_s() { return sg4::Engine::get_clock(); }

// How long a gateway remembers a stage that failed (it is routed around).
constexpr double kFailureMemoryS = 60;
// How long a request waits for the swarm to cover every layer before it fails.
constexpr double kCoverageWaitS = 60;

class Session {
 public:
  Session(World& w, const RequestSpec& r)
      : w_(w), r_(r), g_(*w.gateways[r.region]), rng_(w.scenario.seed * 1000003 + r.id) {
    mb_ = sg4::Mailbox::by_name("request-" + std::to_string(r.id));
    cfg_.max_width = w.scenario.speculation.max_drafts + 1;
  }

  bool run() {
    if (!choose_chain_waiting()) return false;
    Step* first = exchange({r_.prompt_tokens}, 0, true);
    if (!first) return false;
    delete first;
    w_.metrics.first_token(now_s(), now_s() - r_.arrival_s);
    first_token_s_ = now_s();
    produced_ = 1;
    while (produced_ < r_.output_tokens) {
      const int remaining = r_.output_tokens - produced_;
      const Plan p = plan_runs(remaining);
      // The verdicts, drawn up front: draft i holds with probability a if
      // drafts 1..i-1 held. While decoding plainly, a shadow chain of 2
      // drafts is judged (n-gram drafts cost nothing to make) so the
      // controller's estimates stay current.
      const int judged = p.drafts > 0 ? p.drafts : (w_.scenario.speculation.enabled ? 2 : 0);
      int held = 0;
      while (held < judged && accept_(rng_) < w_.scenario.speculation.acceptance) ++held;
      if (judged > 0) g_.spec = observe(g_.spec, cfg_, DraftOutcome{judged, held});
      const int accepted = p.drafts > 0 ? held : 0;
      // The run whose verdict settles the chain: the one holding the first
      // rejected draft, or the last run when every draft held.
      int decisive = static_cast<int>(p.runs.size()) - 1;
      if (accepted < p.drafts) {
        const int d = accepted + 1;  // 1-based position of the rejected draft
        const int k = p.runs[0];
        decisive = d <= k - 1 ? 0 : 1 + (d - k) / k;
      }
      const double start = now_s();
      Step* answer = exchange(p.runs, decisive, false);
      if (!answer) return false;
      delete answer;
      // Runs after the decisive one built on a rejected draft: cancelled.
      w_.cancelled_below[r_.id] = seq_ + 1;
      const double took = now_s() - start;
      const int yielded = std::min(remaining, accepted + 1);
      produced_ += yielded;
      w_.metrics.token(now_s(), took / yielded, yielded);
      w_.metrics.step(now_s(), p.drafts > 0);
      note_goodput(p.drafts > 0, yielded, took);
      if (p.drafts == 0) {
        plain_times_.push_back(took);
        if (plain_times_.size() > 16) plain_times_.pop_front();
      }
    }
    return true;
  }

  // When the first token came (-1: never) and how many tokens were produced.
  double first_token_s() const { return first_token_s_; }
  int produced() const { return produced_; }
  // The request is over: its sessions close.
  void close() {
    if (chain_) w_.count_own_sessions(r_.region, *chain_, -1);
    chain_.reset();
  }

 private:
  bool choose_chain_waiting() {
    const double until = now_s() + kCoverageWaitS;
    for (;;) {
      const std::vector<PeerSnapshot>& peers = w_.gateway_peers(r_.region, now_s());
      Result<std::vector<ChainStage>> c = choose_chain(peers, kModelId, w_.scenario.model.n_layer);
      if (c.ok()) {
        auto chain = std::make_shared<Chain>();
        chain->reply = mb_;
        chain->session = r_.id;
        chain->gateway = r_.region;
        chain->attempt = ++attempt_;
        for (const ChainStage& st : *c) {
          Hop h;
          h.node = w_.node_of(st.address, &h.incarnation);
          h.first_layer = st.first_layer;
          h.last_layer = st.last_layer;
          h.address = st.address;
          chain->key += st.address + ":" + std::to_string(st.first_layer) + "-" +
                        std::to_string(st.last_layer) + " ";
          chain->hops.push_back(h);
        }
        if (chain_) w_.count_own_sessions(r_.region, *chain_, -1);
        w_.count_own_sessions(r_.region, *chain, +1);
        chain_ = chain;
        w_.live_requests[r_.id] = {mb_, chain_};
        return true;
      }
      if (now_s() >= until) return false;
      sg4::this_actor::sleep_for(1.0);
    }
  }

  bool alive(const Hop& h) const {
    const NodeState& n = w_.nodes[h.node];
    return n.online && n.incarnation == h.incarnation;
  }

  void send(int64_t seq, int tokens, bool bulk, bool continuation) {
    auto* s = new Step;
    s->chain = chain_;
    s->seq = seq;
    s->tokens = tokens;
    s->bulk = bulk;
    s->continuation = continuation;
    const Hop& first = chain_->hops[0];
    if (!alive(first)) {  // gone: nobody will answer
      delete s;
      return;
    }
    w_.nodes[first.node]
        .mailbox
        ->put_init(s, static_cast<uint64_t>(hidden_bytes(tokens, w_.scenario.model.d_model)))
        ->detach();
  }

  // The answer to this step on the current chain, or nullptr once `seconds` pass.
  Step* wait(double seconds) {
    const double until = now_s() + seconds;
    for (;;) {
      const double left = until - now_s();
      if (left <= 0) return nullptr;
      Step* s = nullptr;
      try {
        s = mb_->get<Step>(left);
      } catch (const simgrid::TimeoutException&) {
        return nullptr;
      } catch (const simgrid::NetworkFailureException&) {
        continue;  // the last stage died while answering: the deadline will tell
      }
      if (s->seq == kResetSeq) {
        // A stage of a chain this request was on was reset: if it is the
        // current chain, no answer will come; fail over now.
        const bool current = s->chain->attempt == attempt_;
        delete s;
        if (current) {
          reset_ = true;
          return nullptr;
        }
        continue;
      }
      if (s->chain->attempt == attempt_ && s->seq == awaited_) return s;
      delete s;  // from a chain we left, a replayed step, or a run after a rejected draft
    }
  }

  // Sends runs of `runs[i]` tokens back to back (the first an anchor, the
  // others continuations) and returns the answer to run `decisive` (the
  // caller deletes it); answers to later runs are dropped when they come.
  // Fails over to another chain while stages die; nullptr when the request
  // must give up (no chain covers the model any more).
  Step* exchange(const std::vector<int>& runs, int decisive, bool bulk) {
    const double first_sent = now_s();
    double sent = first_sent;
    int send_tokens = 0;
    for (size_t i = 0; i < runs.size(); ++i) {
      send(++seq_, runs[i], bulk, i > 0);
      if (static_cast<int>(i) <= decisive) send_tokens += runs[i];
      if (static_cast<int>(i) == decisive) awaited_ = seq_;
    }
    bool recovered = false;
    const StepDeadlineOptions opts;
    for (;;) {
      const double deadline = g_.steps.deadline(chain_->key, send_tokens, opts).count() / 1000.0;
      reset_ = false;
      if (Step* a = wait(deadline)) {
        double compute = 0;
        for (const StageTiming& t : a->timings) {
          compute += t.compute_s / std::max(1, t.batch_tokens);
          g_.stage_times.observe(t.address, t.batch_tokens,
                                 static_cast<int64_t>(t.compute_s * 1e6));
        }
        g_.steps.observe(chain_->key, send_tokens, now_s() - sent, compute);
        if (recovered) w_.metrics.recovery(now_s(), now_s() - first_sent);
        return a;
      }
      // Overdue: probe every stage (in parallel); one that does not answer
      // within the probe timeout has failed.
      double probe = 0;
      std::vector<const Hop*> dead;
      for (const Hop& h : chain_->hops) {
        if (alive(h)) {
          probe = std::max(probe, w_.scenario.network.rtt_s[r_.region][w_.nodes[h.node].region]);
        } else {
          probe = std::max(probe, opts.probe_timeout.count() / 1000.0);
          dead.push_back(&h);
        }
      }
      if (!reset_) sg4::this_actor::sleep_for(probe);  // a reset needs no probe
      const bool past_ceiling = now_s() - sent >= opts.ceiling.count() / 1000.0;
      if (dead.empty() && !past_ceiling) continue;  // slow, not gone: keep waiting
      for (const Hop* h : dead) g_.failed_until[h->address] = now_s() + kFailureMemoryS;
      if (past_ceiling)
        for (const Hop& h : chain_->hops) g_.failed_until[h.address] = now_s() + kFailureMemoryS;
      if (!choose_chain_waiting()) return nullptr;
      // Replay: the new chain rebuilds the KV cache from every known token
      // (prompt and output so far) and runs this step's tokens with it.
      send_tokens = r_.prompt_tokens + std::max(0, produced_ - 1) + (bulk ? 0 : send_tokens);
      recovered = true;
      sent = now_s();
      awaited_ = ++seq_;
      send(awaited_, send_tokens, true, false);
    }
  }

  struct Plan {
    std::vector<int> runs = {1};  // tokens per run: [anchor + k-1 drafts], then k drafts each
    int drafts = 0;
  };

  // The next chain of runs: the controller's plan (width k, runs in flight W,
  // drafts n <= W k - 1) with this chain's measurements, at most `remaining`
  // tokens in all.
  Plan plan_runs(int remaining) {
    Plan out;
    if (!w_.scenario.speculation.enabled) return out;
    PipelineMeasurements m;
    std::vector<std::string> addresses;
    int prev_region = r_.region;
    for (const Hop& h : chain_->hops) {
      addresses.push_back(h.address);
      const int reg = w_.nodes[h.node].region;
      m.link_delay_s.push_back(one_way_latency(w_.scenario, prev_region, reg));
      prev_region = reg;
      m.load = std::max(m.load, std::clamp(w_.nodes[h.node].busy_ewma, 0.0, 1.0));
    }
    m.link_delay_s.push_back(one_way_latency(w_.scenario, prev_region, r_.region));
    m.stages = g_.stage_times.chain_times(addresses);
    if (!plain_times_.empty()) {
      std::vector<double> t(plain_times_.begin(), plain_times_.end());
      std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
      m.plain_round_trip_s = t[t.size() / 2];
    }
    m.shadow_acceptance = true;
    Result<SpeculationPlan> p = plan(g_.spec, cfg_, m, now_s());
    if (!p.ok() || !p->speculate) return out;
    const int k = std::max(1, p->width);
    out.drafts = std::max(0, std::min({p->drafts, remaining - 1, p->max_in_flight * k - 1}));
    out.runs = {1 + std::min(k - 1, out.drafts)};
    for (int left = out.drafts - (k - 1); left > 0; left -= k)
      out.runs.push_back(std::min(k, left));
    return out;
  }

  void note_goodput(bool speculative, int tokens, double seconds) {
    if (speculative != window_spec_ || window_steps_ >= 8) {
      if (window_steps_ > 0)
        g_.spec = observe(g_.spec, cfg_,
                          GoodputWindow{window_spec_, window_tokens_, window_seconds_, now_s()});
      window_spec_ = speculative;
      window_tokens_ = window_seconds_ = 0;
      window_steps_ = 0;
    }
    window_tokens_ += tokens;
    window_seconds_ += seconds;
    window_steps_++;
  }

  World& w_;
  RequestSpec r_;
  GatewayState& g_;
  sg4::Mailbox* mb_ = nullptr;
  std::shared_ptr<Chain> chain_;
  int attempt_ = 0;
  int64_t seq_ = 0;
  int64_t awaited_ = 0;  // the step whose answer counts
  int produced_ = 0;
  bool reset_ = false;  // the last wait ended because a stage of the chain was reset
  double first_token_s_ = -1;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> accept_{0.0, 1.0};
  SpecConfig cfg_;
  std::deque<double> plain_times_;
  bool window_spec_ = false;
  double window_tokens_ = 0, window_seconds_ = 0;
  int window_steps_ = 0;
};

}  // namespace

void run_request(World* world, RequestSpec spec) {
  world->metrics.request_started(now_s());
  Session s(*world, spec);
  const bool ok = s.run();
  s.close();
  world->cancelled_below[spec.id] = std::numeric_limits<int64_t>::max();
  world->live_requests.erase(spec.id);
  world->metrics.request_done(now_s(), ok);
  if (ok) world->metrics.request_record({spec.arrival_s, s.first_token_s(), now_s(), s.produced()});
}

}  // namespace swarm::sim
