#include "sim/request_actor.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <simgrid/s4u.hpp>

#include "engine/mix64.h"
#include "pipeline/chain_session.h"
#include "pipeline/speculative_decoder.h"
#include "routing/chain.h"
#include "sim/actor_clock.h"
#include "sim/messages.h"
#include "sim/script_drafter.h"
#include "sim/sim_transport.h"
#include "sim/world.h"

namespace swarm::sim {
namespace sg4 = simgrid::s4u;
namespace {

double now_s() { return sg4::Engine::get_clock(); }

// How long a gateway remembers a stage that failed (it is routed around).
constexpr double kFailureMemoryS = 60;
// How long a request waits for the swarm to cover every layer before it fails.
constexpr double kCoverageWaitS = 60;
// Failovers a request gets (PipelineOptions::max_recoveries).
constexpr int kMaxRecoveries = 3;

class Request {
 public:
  Request(World& w, const RequestSpec& r)
      : w_(w), r_(r), g_(*w.gateways[r.region]), seed_(mix64(w.scenario.seed * 1000003 + r.id)) {
    mb_ = sg4::Mailbox::by_name("request-" + std::to_string(r.id));
    // An inbox actor receives the answers, with no timeout: the session
    // wakes up every second, and a receive that timed out would cancel an
    // answer still in transfer. The request waits on the inbox instead.
    inbox_mu_ = sg4::Mutex::create();
    inbox_cv_ = sg4::ConditionVariable::create();
    inbox_actor_ = sg4::Actor::create("inbox-" + std::to_string(r.id), sg4::this_actor::get_host(),
                                      [this] { receive_loop(); });
    // Answers flow as soon as they are sent, each after its own latency, as
    // a gRPC stream's do: without a receiver set, SimGrid starts a transfer
    // only when the inbox asks for the next message, so answers sent 13 ms
    // apart arrived a full latency apart (100 ms on a 100 ms link).
    mb_->set_receiver(inbox_actor_);
    if (!g_.memory) g_.memory = std::make_unique<SpeculationMemory>(clock_);
    options_.clock = &clock_;
    const Speculation& sc = w.scenario.speculation;
    spec_.mode = !sc.enabled ? SpeculationMode::kOff
                 : sc.always ? SpeculationMode::kNgram
                             : SpeculationMode::kAuto;
    spec_.max_draft = sc.max_drafts;
  }

  bool run() {
    if (!route()) return false;
    for (int64_t i = 0; i < r_.prompt_tokens; ++i) fed_.push_back(script_token(seed_, i));
    // The prompt: its answer is the first token.
    Result<int32_t> first = session_->step(fed_, 0);
    while (!first.ok()) {
      if (!fail_over()) return false;
      first = session_->step(fed_, 0);
    }
    first_token_s_ = last_verdict_s_ = group_at_ = now_s();
    w_.metrics.first_token(now_s(), now_s() - r_.arrival_s);
    anchor_ = *first;
    produced_ = 1;
    const Speculation& sc = w_.scenario.speculation;
    ScriptDrafter drafter(seed_, sc, r_.prompt_tokens, seed_ ^ 0x5eed);
    SpeculationReport report;
    while (produced_ < r_.output_tokens) {
      if (spec_.mode == SpeculationMode::kOff) {
        // Plain decoding: a step per token, as the gateway does.
        auto t = session_->step({anchor_}, static_cast<int>(fed_.size()));
        if (t.ok()) {
          fed_.push_back(anchor_);
          anchor_ = *t;
          verdict(false);
          emit();
          continue;
        }
      } else {
        int steps_seen = report.plain_steps + report.speculative_steps;
        int speculative_seen = report.speculative_steps;
        auto on_token = [&](int32_t) {
          // A new verdict (a step counted) starts a new group of tokens.
          if (report.plain_steps + report.speculative_steps != steps_seen) {
            verdict(report.speculative_steps != speculative_seen);
            steps_seen = report.plain_steps + report.speculative_steps;
            speculative_seen = report.speculative_steps;
          }
          return emit();
        };
        auto remaining = [&] { return r_.output_tokens - produced_; };
        if (decode_speculatively(*session_, drafter, spec_, *g_.memory, fed_, anchor_, on_token,
                                 remaining, report)
                .ok())
          break;
      }
      // A stage failed: route around it and replay what is verified; the
      // replay's answer is the token after the anchor.
      // The stall the user sees runs from the last token.
      const double failed_at = std::max(group_at_, first_token_s_);
      for (;;) {
        if (!fail_over()) return false;
        std::vector<int32_t> replay = fed_;
        replay.push_back(anchor_);
        auto t = session_->step(replay, 0);
        if (!t.ok()) continue;
        fed_ = std::move(replay);
        anchor_ = *t;
        w_.metrics.recovery(now_s(), now_s() - failed_at);
        verdict(false);
        emit();
        break;
      }
    }
    flush();
    return true;
  }

  double first_token_s() const { return first_token_s_; }
  int produced() const { return produced_; }
  ~Request() {
    if (inbox_actor_) inbox_actor_->kill();
    for (Step* s : inbox_) delete s;
  }
  // The request is over: its sessions close.
  void close() {
    session_.reset();
    transport_.reset();
    if (chain_) w_.count_own_sessions(r_.region, *chain_, -1);
    chain_.reset();
  }

 private:
  // Routes the request (waiting while no chain covers the model) and opens a
  // session on the chain; false when the request must give up.
  bool route() {
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
          chain->hops.push_back(h);
        }
        if (chain_) w_.count_own_sessions(r_.region, *chain_, -1);
        w_.count_own_sessions(r_.region, *chain, +1);
        chain_ = chain;
        w_.live_requests[r_.id] = {mb_, chain_};
        // The old session and its transport go first: the new transport
        // takes over the clock's pump.
        session_.reset();
        options_.transport.reset();
        transport_.reset();
        transport_ = std::make_shared<SimTransport>(
            w_, chain_, r_.region, clock_, [this](double until) { return receive(until); },
            [seed = seed_](int64_t x) { return script_token(seed, x); });
        options_.transport = transport_;
        session_ = std::make_unique<ChainSession>(*c, options_, &g_.steps);
        // As PipelineBackend: past the step timeout, with every stage
        // answering and no other chain to fail over to, wait on; each wait
        // costs a failover.
        session_->set_ceiling_wait([this](const std::vector<ChainStage>& at) {
          if (recoveries_ >= kMaxRecoveries ||
              other_chain_exists(w_.gateway_peers(r_.region, now_s()), at, kModelId,
                                 w_.scenario.model.n_layer))
            return false;
          ++recoveries_;
          w_.metrics.ceiling_wait(now_s());
          return true;
        });
        if (session_
                ->open(kModelId, w_.scenario.model.n_layer, SamplingParams{},
                       r_.prompt_tokens + r_.output_tokens + 64)
                .ok())
          return true;
        // A chain that cannot be opened counts as a failover, as in
        // PipelineBackend: the request gives up after max_recoveries.
        if (++recoveries_ > kMaxRecoveries) return false;
        blame(session_->suspect());
        continue;
      }
      if (now_s() >= until) return false;
      sg4::this_actor::sleep_for(1.0);
    }
  }

  void receive_loop() {
    for (;;) {
      Step* s = nullptr;
      try {
        s = mb_->get<Step>();
      } catch (const simgrid::NetworkFailureException&) {
        continue;  // the last stage died while answering: the deadline will tell
      }
      std::unique_lock<sg4::Mutex> lock(*inbox_mu_);
      inbox_.push_back(s);
      inbox_cv_->notify_all();
    }
  }
  // The next answer in the inbox, waiting until `until`; nullptr if none came.
  Step* receive(double until) {
    Step* s = nullptr;
    {
      std::unique_lock<sg4::Mutex> lock(*inbox_mu_);
      while (inbox_.empty()) {
        if (until >= SimTransport::kForever) {
          inbox_cv_->wait(lock);
        } else if (now_s() >= until ||
                   inbox_cv_->wait_until(lock, until) == std::cv_status::timeout) {
          if (inbox_.empty()) return nullptr;
        }
      }
      s = inbox_.front();
      inbox_.pop_front();
    }
    // The gateway (and its client) handle the answer on the shared machine.
    w_.compute(w_.scenario.machine_gateway_step_s);
    return s;
  }

  // The failed stage (or, when none is known, every stage) is avoided for the
  // failure memory; then the request is routed anew.
  bool fail_over() {
    if (++recoveries_ > kMaxRecoveries) return false;
    blame(session_ ? session_->suspect() : std::string());
    return route();
  }
  void blame(const std::string& suspect) {
    if (!suspect.empty()) {
      g_.failed_until[suspect] = now_s() + kFailureMemoryS;
    } else if (chain_) {
      for (const Hop& h : chain_->hops) g_.failed_until[h.address] = now_s() + kFailureMemoryS;
    }
  }

  // Tokens come in groups, one per verdict: each token of a group is charged
  // an equal share of the time since the verdict before.
  void verdict(bool speculative) {
    flush();
    w_.metrics.step(now_s(), speculative);
    group_at_ = now_s();
  }
  bool emit() {
    ++group_;
    ++produced_;
    return produced_ < r_.output_tokens;
  }
  void flush() {
    if (group_ == 0) return;
    w_.metrics.token(group_at_, (group_at_ - last_verdict_s_) / group_, group_);
    last_verdict_s_ = group_at_;
    group_ = 0;
  }

  World& w_;
  RequestSpec r_;
  GatewayState& g_;
  const uint64_t seed_;
  sg4::Mailbox* mb_ = nullptr;
  sg4::MutexPtr inbox_mu_;
  sg4::ConditionVariablePtr inbox_cv_;
  std::deque<Step*> inbox_;
  sg4::ActorPtr inbox_actor_;
  ActorClock clock_;
  PipelineOptions options_;
  SpeculationOptions spec_;
  std::shared_ptr<Chain> chain_;
  std::shared_ptr<SimTransport> transport_;
  std::unique_ptr<ChainSession> session_;
  int attempt_ = 0;
  int recoveries_ = 0;
  std::vector<int32_t> fed_;
  int32_t anchor_ = 0;
  int produced_ = 0;
  double first_token_s_ = -1;
  double last_verdict_s_ = 0, group_at_ = 0;
  int group_ = 0;
};

}  // namespace

void run_request(World* world, RequestSpec spec) {
  world->metrics.request_started(now_s());
  const bool ok = [&] {
    Request r(*world, spec);
    const bool done = r.run();
    r.close();
    if (done && spec.counted)
      world->metrics.request_record({spec.arrival_s, r.first_token_s(), now_s(), r.produced()});
    return done;
  }();
  world->ended_sessions.insert(spec.id);
  world->live_requests.erase(spec.id);
  world->metrics.request_done(now_s(), ok);
}

}  // namespace swarm::sim
