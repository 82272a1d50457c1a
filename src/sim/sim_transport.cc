#include "sim/sim_transport.h"

#include <algorithm>
#include <simgrid/s4u.hpp>

#include "sim/platform.h"
#include "sim/world.h"

namespace swarm::sim {
namespace sg4 = simgrid::s4u;
namespace {

double now_s() { return sg4::Engine::get_clock(); }

}  // namespace

class SimTransport::Link final : public StageLink {
 public:
  Link(SimTransport& t, size_t index) : t_(t), index_(index) {}
  bool write(const v1::StageRequest& req) override { return t_.write(index_, req); }
  void writes_done() override {}
  void cancel() override {}
  void finish() override {}

 private:
  SimTransport& t_;
  const size_t index_;
};

SimTransport::SimTransport(World& w, std::shared_ptr<const Chain> chain, int region,
                           ActorClock& clock, Receive receive, ScriptedSession::Script script)
    : w_(w),
      chain_(std::move(chain)),
      region_(region),
      clock_(clock),
      receive_(std::move(receive)),
      last_stage_(std::make_shared<LastStage>(std::move(script))) {
  clock_.set_pump([this](Clock::time_point deadline) { pump(deadline); });
}

SimTransport::~SimTransport() { clock_.set_pump(nullptr); }

bool SimTransport::alive(size_t index) const {
  const Hop& h = chain_->hops[index];
  const NodeState& n = w_.nodes[h.node];
  return n.online && n.incarnation == h.incarnation;
}

double SimTransport::rtt(size_t index) const {
  return w_.scenario.network.rtt_s[region_][w_.nodes[chain_->hops[index].node].region];
}

std::unique_ptr<StageLink> SimTransport::open(const ChainStage&, size_t index, EventSink sink) {
  sinks_[index] = std::move(sink);
  return std::make_unique<Link>(*this, index);
}

bool SimTransport::write(size_t index, const v1::StageRequest& req) {
  if (index >= chain_->hops.size()) return false;
  if (!alive(index)) {
    // A gone node's record may outlive it: opening a session there costs at
    // least a round trip (a refused connection), so a request that keeps
    // finding such records still spends simulated time, as a real one does.
    // (Anything else fails at once: it goes to a stream already broken, and
    // a session's Close is written from its destructor, which must not wait.)
    if (req.has_open()) sg4::this_actor::sleep_for(std::max(1e-3, rtt(index)));
    return false;
  }
  if (req.has_open()) {
    StageEvent e;
    e.stage = index;
    e.response.mutable_opened()->set_session_id(req.open().session_id());
    local_.emplace(now_s() + rtt(index), std::move(e));
  } else if (req.has_step()) {
    const v1::Step& st = req.step();
    auto* s = new Step;
    s->chain = chain_;
    s->last_stage = last_stage_;
    s->seq = static_cast<int64_t>(st.step_id());
    s->tokens = st.tokens_size();
    s->continuation = st.continues_previous();
    s->bulk = st.n_drafts() == 0 && !st.continues_previous() && st.tokens_size() > 1;
    last_stage_->sent(st);
    w_.nodes[chain_->hops[index].node]
        .mailbox
        ->put_init(s, static_cast<uint64_t>(hidden_bytes(s->tokens, w_.scenario.model.d_model)))
        ->detach();
  } else if (req.has_cancel()) {
    // It goes to the first stage and each passes it on, as a node does: a
    // stage drops the steps it covers once it arrives there, and runs those
    // that reach it before. (Dropped at every stage at once, the simulated
    // swarm skipped work real stages do: bench/sim_validate.sh measures the
    // share of the nodes' compute spent on steps cancelled after they ran.)
    const NodeState::Cancel cancel{chain_->session,
                                   static_cast<int64_t>(req.cancel().from_step_id()),
                                   static_cast<int64_t>(req.cancel().to_step_id())};
    double at = now_s();
    int from = region_;
    for (const Hop& h : chain_->hops) {
      NodeState& n = w_.nodes[h.node];
      at += one_way_latency(w_.scenario, from, n.region);
      from = n.region;
      n.cancels_on_the_way.emplace(at, cancel);
    }
    last_stage_->cancelled(req.cancel().from_step_id(), req.cancel().to_step_id());
  }
  return true;
}

void SimTransport::deliver(StageEvent e) {
  auto it = sinks_.find(e.stage);
  if (it != sinks_.end()) it->second(std::move(e));
}

void SimTransport::pump(Clock::time_point deadline) {
  const double until = deadline == Clock::kNever ? kForever : ActorClock::seconds(deadline);
  for (;;) {
    const double now = now_s();
    // Within a microsecond is now: SimGrid does not wait for less.
    if (!local_.empty() && local_.begin()->first <= now + 1e-6) {
      StageEvent e = std::move(local_.begin()->second);
      local_.erase(local_.begin());
      deliver(std::move(e));
      return;
    }
    const double wake = std::min(until, local_.empty() ? kForever : local_.begin()->first);
    if (wake <= now + 1e-6) return;
    Step* s = receive_(wake);
    if (s == nullptr) continue;  // a local event came due, or the deadline
    std::unique_ptr<Step> owned(s);
    if (s->chain->attempt != chain_->attempt) continue;  // from a chain this request left
    if (s->seq == kResetSeq) {
      // A stage of this chain was killed: its connection reset.
      deliver({static_cast<size_t>(
                   std::clamp<int>(s->hop, 0, static_cast<int>(chain_->hops.size()) - 1)),
               true,
               Status::Unavailable("stream closed (reset)"),
               {}});
      return;
    }
    std::optional<v1::StageResponse> answer = last_stage_->answer(static_cast<uint64_t>(s->seq));
    if (!answer) continue;  // cancelled
    StageEvent e;
    e.stage = chain_->hops.size() - 1;
    e.response = std::move(*answer);
    if (e.response.has_result()) {
      for (const StageTiming& t : s->timings) {
        v1::StageTiming* pt = e.response.mutable_result()->add_timings();
        pt->set_address(t.address);
        pt->set_batch_tokens(t.batch_tokens);
        pt->set_compute_us(static_cast<int64_t>(t.compute_s * 1e6));
      }
    }
    deliver(std::move(e));
    return;
  }
}

int SimTransport::first_silent_stage(const std::vector<ChainStage>& stages,
                                     std::chrono::milliseconds timeout) {
  // Every stage asked at once: a live one answers in a round trip, a dead one
  // lets the timeout run out.
  double wait = 0;
  int silent = -1;
  for (size_t i = 0; i < stages.size(); ++i) {
    int incarnation = 0;
    const int node = w_.node_of(stages[i].address, &incarnation);
    const bool up = node >= 0 && w_.nodes[node].online && w_.nodes[node].incarnation == incarnation;
    if (up) {
      wait = std::max(wait, w_.scenario.network.rtt_s[region_][w_.nodes[node].region]);
    } else {
      wait = std::max(wait, std::chrono::duration<double>(timeout).count());
      if (silent < 0) silent = static_cast<int>(i);
    }
  }
  sg4::this_actor::sleep_for(wait);
  return silent;
}

std::vector<PeerProbe> SimTransport::survey(const std::vector<net::PeerAddress>& peers,
                                            const std::vector<int>&, std::chrono::milliseconds) {
  // The simulator's gateways survey through World::gateway_peers; this
  // answers the same from the records, without simulated time.
  std::vector<PeerProbe> out;
  for (const net::PeerAddress& peer : peers) {
    PeerProbe& p = out.emplace_back();
    int incarnation = 0;
    const int node = w_.node_of(peer.address, &incarnation);
    if (node < 0 || !w_.nodes[node].online) {
      p.error = peer.address + ": connection refused";
      continue;
    }
    const PeerSnapshot snap = w_.snapshot(node, region_, now_s());
    p.reached = true;
    p.address_index = 0;
    p.address = peer.address;
    p.rtt_seconds = snap.rtt_seconds;
    p.info.set_model_id(snap.model_id);
    p.info.set_n_layer(snap.n_layer);
    p.info.set_first_layer(snap.first_layer);
    p.info.set_last_layer(snap.last_layer);
    p.info.set_layer_tokens_per_second(snap.layer_tokens_per_second);
    p.info.set_active_sessions(snap.active_sessions);
    p.info.set_queued_steps(snap.queued_steps);
  }
  return out;
}

}  // namespace swarm::sim
