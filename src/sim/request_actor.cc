#include "sim/request_actor.h"

#include <algorithm>
#include <deque>
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
    const double t0 = now_s();
    Step* first = exchange(r_.prompt_tokens, true);
    if (!first) return false;
    delete first;
    w_.metrics.first_token(now_s(), now_s() - r_.arrival_s);
    produced_ = 1;
    (void)t0;
    while (produced_ < r_.output_tokens) {
      const int remaining = r_.output_tokens - produced_;
      const int drafts = std::min(remaining - 1, planned_drafts());
      const double start = now_s();
      Step* answer = exchange(1 + drafts, false, drafts > 0);
      if (!answer) return false;
      delete answer;
      const double took = now_s() - start;
      int accepted = 0;
      if (w_.scenario.speculation.enabled) {
        // Drafts judged in order; the first rejection ends the run. While
        // decoding plainly, drafts are judged in the shadow (n-gram drafts cost
        // nothing to make), so the controller's estimates stay current.
        const int judged = drafts > 0 ? drafts : cfg_.max_width - 1;
        int ok = 0;
        while (ok < judged && accept_(rng_) < w_.scenario.speculation.acceptance) ++ok;
        spec_ = observe(spec_, cfg_, DraftOutcome{judged, ok});
        accepted = drafts > 0 ? ok : 0;
      }
      const int yielded = std::min(remaining, accepted + 1);
      produced_ += yielded;
      w_.metrics.token(now_s(), took / yielded, yielded);
      w_.metrics.step(now_s(), drafts > 0);
      note_goodput(drafts > 0, yielded, took);
      if (drafts == 0) {
        plain_times_.push_back(took);
        if (plain_times_.size() > 16) plain_times_.pop_front();
      }
    }
    return true;
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
        chain_ = chain;
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

  void send(int tokens, bool bulk, bool continuation) {
    auto* s = new Step;
    s->chain = chain_;
    s->seq = seq_;
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
      if (s->chain->attempt == attempt_ && s->seq == seq_) return s;
      delete s;  // an answer from a chain we left, or to a step we replayed
    }
  }

  // Sends a step of `tokens` and returns its answer (the caller deletes it),
  // failing over to another chain while stages die; nullptr when the request
  // must give up (no chain covers the model any more).
  Step* exchange(int tokens, bool bulk, bool continuation = false) {
    ++seq_;
    const double first_sent = now_s();
    double sent = first_sent;
    int send_tokens = tokens;
    bool send_bulk = bulk;
    bool recovered = false;
    send(send_tokens, send_bulk, continuation);
    const StepDeadlineOptions opts;
    for (;;) {
      const double deadline = g_.steps.deadline(chain_->key, send_tokens, opts).count() / 1000.0;
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
      sg4::this_actor::sleep_for(probe);
      const bool past_ceiling = now_s() - sent >= opts.ceiling.count() / 1000.0;
      if (dead.empty() && !past_ceiling) continue;  // slow, not gone: keep waiting
      for (const Hop* h : dead) g_.failed_until[h->address] = now_s() + kFailureMemoryS;
      if (past_ceiling)
        for (const Hop& h : chain_->hops) g_.failed_until[h.address] = now_s() + kFailureMemoryS;
      if (!choose_chain_waiting()) return nullptr;
      // Replay: the new chain rebuilds the KV cache from every known token
      // (prompt and output so far) and runs this step's tokens with it.
      send_tokens = r_.prompt_tokens + std::max(0, produced_ - 1) + (bulk ? 0 : tokens);
      send_bulk = true;
      recovered = true;
      sent = now_s();
      send(send_tokens, send_bulk, false);
    }
  }

  // Drafts for the next step: the controller's plan with this chain's measurements.
  int planned_drafts() {
    if (!w_.scenario.speculation.enabled) return 0;
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
    Result<SpeculationPlan> p = plan(spec_, cfg_, m, now_s());
    if (!p.ok() || !p->speculate) return 0;
    return std::max(0, std::min(p->drafts, p->width - 1));
  }

  void note_goodput(bool speculative, int tokens, double seconds) {
    if (speculative != window_spec_ || window_steps_ >= 8) {
      if (window_steps_ > 0)
        spec_ = observe(spec_, cfg_,
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
  int produced_ = 0;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> accept_{0.0, 1.0};
  SpecConfig cfg_;
  SpecState spec_;
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
  world->metrics.request_done(now_s(), ok);
}

}  // namespace swarm::sim
