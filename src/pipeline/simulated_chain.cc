#include "pipeline/simulated_chain.h"

#include <algorithm>
#include <functional>
#include <utility>

namespace swarm {
namespace {

// grpc::StatusCode::UNAVAILABLE, as v1::Error carries it (no gRPC here).
constexpr int kUnavailable = 14;

}  // namespace

struct SimulatedChain::Work {
  v1::Step step;
  Clock::time_point arrived;
  std::vector<v1::StageTiming> timings;  // of the stages before, then this one's
  v1::StageResponse response;            // the last stage's answer, timings aside
};

struct SimulatedChain::Stage {
  SimulatedStageSpec spec;
  bool stopped = false, dead = false;
  bool busy = false;
  uint64_t running_step = 0;
  std::string running_session;
  std::deque<Work> queue;
  struct Session {
    int owner = -1;  // the gateway's link to this stage
    std::unique_ptr<ScriptedSession> state;
    std::string push_to;  // where its steps go next (push mode)
  };
  std::map<std::string, Session> sessions;
  // Completions that fell due while stopped, run on resume.
  std::vector<std::function<void()>> held;
  int64_t steps = 0, cancelled = 0;
};

class SimulatedChain::Link final : public StageLink {
 public:
  Link(SimulatedChain& chain, int id) : chain_(chain), id_(id) {}
  ~Link() override { cancel(); }
  bool write(const v1::StageRequest& req) override {
    std::lock_guard<std::recursive_mutex> lock(chain_.mu_);
    auto it = chain_.links_.find(id_);
    if (it == chain_.links_.end() || !it->second.open || it->second.stage->dead) return false;
    Stage* s = it->second.stage;
    chain_.clock_.schedule_after(chain_.link_, [c = &chain_, s, id = id_, req] {
      std::lock_guard<std::recursive_mutex> lock(c->mu_);
      if (!s->dead) c->arrive(*s, id, req);
    });
    return true;
  }
  void writes_done() override {}
  void cancel() override {
    std::lock_guard<std::recursive_mutex> lock(chain_.mu_);
    if (auto it = chain_.links_.find(id_); it != chain_.links_.end()) it->second.open = false;
  }
  void finish() override { cancel(); }

 private:
  SimulatedChain& chain_;
  const int id_;
};

SimulatedChain::SimulatedChain(SimulatedClock& clock, std::vector<SimulatedStageSpec> stages,
                               std::chrono::microseconds link, std::vector<int32_t> script,
                               std::string model_id, int n_layer)
    : clock_(clock),
      link_(link),
      script_(std::move(script)),
      model_id_(std::move(model_id)),
      n_layer_(n_layer) {
  for (SimulatedStageSpec& spec : stages) {
    if (n_layer == 0) n_layer_ = std::max(n_layer_, spec.stage.last_layer);
    auto s = std::make_unique<Stage>();
    s->spec = std::move(spec);
    stages_.push_back(std::move(s));
  }
}

SimulatedChain::~SimulatedChain() = default;

SimulatedChain::Stage* SimulatedChain::find(const std::string& address) const {
  for (const auto& s : stages_)
    if (s->spec.stage.address == address) return s.get();
  return nullptr;
}

int32_t SimulatedChain::script_at(int64_t position) const {
  if (script_.empty()) return 0;
  return script_[static_cast<size_t>(std::clamp<int64_t>(position, 0, script_.size() - 1))];
}

std::unique_ptr<StageLink> SimulatedChain::open(const ChainStage& stage, size_t index,
                                                EventSink sink) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const int id = next_link_++;
  Stage* s = find(stage.address);
  links_[id] = {s, index, std::move(sink), s != nullptr && !s->dead};
  return std::make_unique<Link>(*this, id);
}

void SimulatedChain::answer(int link, v1::StageResponse r) {
  clock_.schedule_after(link_, [this, link, r = std::move(r)]() mutable {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    auto it = links_.find(link);
    if (it == links_.end() || !it->second.open) return;
    it->second.sink({it->second.index, false, Status::Ok(), std::move(r)});
  });
}

void SimulatedChain::answer_error(int link, const std::string& session, uint64_t step, int code,
                                  const std::string& message) {
  v1::StageResponse r;
  v1::Error* e = r.mutable_error();
  e->set_session_id(session);
  e->set_step_id(step);
  e->set_code(code);
  e->set_message(message);
  answer(link, std::move(r));
}

void SimulatedChain::arrive(Stage& s, int from_link, const v1::StageRequest& req) {
  if (req.has_open()) {
    const v1::OpenSession& o = req.open();
    Stage::Session& sess = s.sessions[o.session_id()];
    sess.owner = from_link;
    sess.push_to.clear();
    sess.state = std::make_unique<ScriptedSession>(
        o.is_last(), [this](int64_t position) { return script_at(position); });
    v1::StageResponse r;
    r.mutable_opened()->set_session_id(o.session_id());
    answer(from_link, std::move(r));
  } else if (req.has_step()) {
    arrive_step(s, Work{req.step(), clock_.now(), {}, {}});
  } else if (req.has_cancel()) {
    arrive_cancel(s, req.cancel());
  } else if (req.has_close()) {
    s.sessions.erase(req.close().session_id());
  }
}

void SimulatedChain::arrive_step(Stage& s, Work w) {
  w.arrived = clock_.now();
  s.queue.push_back(std::move(w));
  try_start(s);
}

void SimulatedChain::arrive_cancel(Stage& s, const v1::Cancel& c) {
  auto sess = s.sessions.find(c.session_id());
  if (sess == s.sessions.end()) return;
  auto in_range = [&](uint64_t id) { return id >= c.from_step_id() && id <= c.to_step_id(); };
  for (auto it = s.queue.begin(); it != s.queue.end();) {
    if (it->step.session_id() == c.session_id() && in_range(it->step.step_id())) {
      answer(sess->second.owner, ScriptedSession::cancelled(c.session_id(), it->step.step_id()));
      ++s.cancelled;
      it = s.queue.erase(it);
    } else {
      ++it;
    }
  }
  if (s.busy && s.running_session == c.session_id() && in_range(s.running_step)) {
    // Answered CANCELLED once it finishes (finish()).
    s.running_step = 0;
  }
  if (Stage* next = find(sess->second.push_to)) {
    v1::StageRequest fwd;
    *fwd.mutable_cancel() = c;
    clock_.schedule_after(link_, [this, next, fwd] {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      if (!next->dead) arrive(*next, -1, fwd);
    });
  }
}

void SimulatedChain::try_start(Stage& s) {
  if (s.busy || s.stopped || s.dead || s.queue.empty()) return;
  // Steps that are certain go before speculative continuations.
  auto pick = std::find_if(s.queue.begin(), s.queue.end(),
                           [](const Work& w) { return !w.step.continues_previous(); });
  if (pick == s.queue.end()) pick = s.queue.begin();
  Work w = std::move(*pick);
  s.queue.erase(pick);
  const v1::Step& st = w.step;
  auto found = s.sessions.find(st.session_id());
  if (found == s.sessions.end()) {
    // Pushed for a session this stage does not hold: nobody to tell but the
    // stage before, which a real node would answer with an error; dropped.
    return try_start(s);
  }
  Stage::Session& sess = found->second;
  const int n = st.tokens_size();
  const ScriptedSession::Outcome o = sess.state->run(st);
  w.response = sess.state->response(st, o);
  if (o.kind != ScriptedSession::Outcome::Kind::kRan) {
    if (o.kind == ScriptedSession::Outcome::Kind::kCancelled) ++s.cancelled;
    answer(sess.owner, std::move(w.response));
    return try_start(s);
  }
  if (st.next_hops_size() > 0) sess.push_to = st.next_hops(0).address();
  s.busy = true;
  s.running_step = st.step_id();
  s.running_session = st.session_id();
  const auto compute = s.spec.base + s.spec.per_token * n;
  v1::StageTiming* t = &w.timings.emplace_back();
  t->set_address(s.spec.stage.address);
  t->set_queue_us(
      std::chrono::duration_cast<std::chrono::microseconds>(clock_.now() - w.arrived).count());
  t->set_compute_us(compute.count());
  t->set_batch_tokens(n);
  clock_.schedule_after(compute, [this, &s, w = std::move(w)]() mutable {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (s.dead) return;
    if (s.stopped) {
      s.held.push_back([this, &s, w = std::move(w)]() mutable { finish(s, std::move(w)); });
      return;
    }
    finish(s, std::move(w));
  });
}

void SimulatedChain::finish(Stage& s, Work w) {
  s.busy = false;
  ++s.steps;
  const v1::Step& st = w.step;
  auto found = s.sessions.find(st.session_id());
  const bool cancelled = s.running_step != st.step_id();
  s.running_step = 0;
  if (found != s.sessions.end()) {
    const Stage::Session& sess = found->second;
    if (cancelled) {
      ++s.cancelled;
      answer(sess.owner, ScriptedSession::cancelled(st.session_id(), st.step_id()));
    } else if (st.next_hops_size() > 0) {
      Stage* next = find(st.next_hops(0).address());
      if (next == nullptr || next->dead ||
          cut_.count({s.spec.stage.address, next->spec.stage.address})) {
        answer_error(sess.owner, st.session_id(), st.step_id(), kUnavailable,
                     "cannot reach next hop " + st.next_hops(0).address());
      } else {
        Work fwd{st, {}, std::move(w.timings), {}};
        fwd.step.mutable_next_hops()->erase(fwd.step.mutable_next_hops()->begin());
        clock_.schedule_after(link_, [this, next, fwd = std::move(fwd)]() mutable {
          std::lock_guard<std::recursive_mutex> lock(mu_);
          if (!next->dead) arrive_step(*next, std::move(fwd));
        });
      }
    } else {
      v1::StepResult* res = w.response.mutable_result();
      for (v1::StageTiming& t : w.timings) *res->add_timings() = std::move(t);
      answer(sess.owner, std::move(w.response));
    }
  }
  try_start(s);
}

int SimulatedChain::first_silent_stage(const std::vector<ChainStage>& stages,
                                       std::chrono::milliseconds timeout) {
  int silent = -1;
  {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    for (size_t i = 0; i < stages.size() && silent < 0; ++i) {
      const Stage* s = find(stages[i].address);
      if (s == nullptr || s->stopped || s->dead) silent = static_cast<int>(i);
    }
  }
  clock_.run_until(clock_.now() + (silent >= 0
                                       ? std::chrono::duration_cast<Clock::duration>(timeout)
                                       : std::chrono::duration_cast<Clock::duration>(2 * link_)));
  return silent;
}

std::vector<PeerProbe> SimulatedChain::survey(const std::vector<net::PeerAddress>& peers,
                                              const std::vector<int>&,
                                              std::chrono::milliseconds timeout) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::vector<PeerProbe> out;
  for (const net::PeerAddress& peer : peers) {
    PeerProbe& probe = out.emplace_back();
    const std::vector<std::string> addrs = peer.addresses();
    const Stage* s = addrs.empty() ? nullptr : find(addrs[0]);
    if (s == nullptr || s->dead) {
      probe.error = (addrs.empty() ? std::string("no address") : addrs[0]) + ": connection refused";
      continue;
    }
    if (s->stopped) {
      probe.error = addrs[0] + ": deadline exceeded";
      probe.timed_out = true;
      continue;
    }
    probe.reached = true;
    probe.address_index = 0;
    probe.address = addrs[0];
    probe.rtt_seconds = 2 * std::chrono::duration<double>(link_).count();
    v1::InfoResponse& info = probe.info;
    info.set_version("swarm.v1");
    info.set_model_id(model_id_);
    info.set_n_layer(n_layer_);
    info.set_first_layer(s->spec.stage.first_layer);
    info.set_last_layer(s->spec.stage.last_layer);
    info.set_active_sessions(static_cast<int32_t>(s->sessions.size()));
    info.set_queued_steps(static_cast<int32_t>(s->queue.size()));
    info.set_kv_bytes_total(int64_t{1} << 30);
    info.set_kv_bytes_free(int64_t{1} << 30);
    const double per_layer =
        std::chrono::duration<double>(s->spec.base + s->spec.per_token).count() /
        std::max(1, s->spec.stage.last_layer - s->spec.stage.first_layer);
    info.set_layer_tokens_per_second(per_layer > 0 ? 1 / per_layer : 0);
    info.set_slowdown(1);
  }
  return out;
}

void SimulatedChain::set_step_time(const std::string& address, std::chrono::microseconds base,
                                   std::chrono::microseconds per_token) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (Stage* s = find(address)) {
    s->spec.base = base;
    s->spec.per_token = per_token;
  }
}

void SimulatedChain::cut(const std::string& from, const std::string& to) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  cut_.insert({from, to});
}

void SimulatedChain::stop(const std::string& address) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (Stage* s = find(address)) s->stopped = true;
}

void SimulatedChain::resume(const std::string& address) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  Stage* s = find(address);
  if (s == nullptr || !s->stopped) return;
  s->stopped = false;
  std::vector<std::function<void()>> held = std::move(s->held);
  s->held.clear();
  for (auto& f : held) f();
  try_start(*s);
}

void SimulatedChain::kill(const std::string& address) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  Stage* s = find(address);
  if (s == nullptr || s->dead) return;
  s->dead = true;
  s->queue.clear();
  s->held.clear();
  s->sessions.clear();
  for (auto& [id, l] : links_) {
    if (l.stage != s || !l.open) continue;
    const int link = id;
    clock_.schedule_after(link_, [this, link] {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      auto it = links_.find(link);
      if (it == links_.end() || !it->second.open) return;
      it->second.open = false;
      it->second.sink({it->second.index, true, Status::Unavailable("stream closed"), {}});
    });
  }
}

int64_t SimulatedChain::steps_run(const std::string& address) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const Stage* s = find(address);
  return s ? s->steps : 0;
}

int64_t SimulatedChain::steps_cancelled(const std::string& address) const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  const Stage* s = find(address);
  return s ? s->cancelled : 0;
}

}  // namespace swarm
