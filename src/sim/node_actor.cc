#include "sim/node_actor.h"

#include <algorithm>
#include <deque>
#include <simgrid/s4u.hpp>
#include <spdlog/spdlog.h>

#include "node/batch_plan.h"
#include "node/stage_session.h"
#include "node/step_scheduler.h"
#include "sim/last_stage.h"
#include "sim/messages.h"
#include "sim/world.h"

namespace swarm::sim {
namespace sg4 = simgrid::s4u;
namespace {

struct Queued {
  Step* step;
  int left;  // tokens not yet run
};

void forward(World& w, Step* s) {
  const Chain& c = *s->chain;
  s->hop++;
  if (s->hop < static_cast<int>(c.hops.size())) {
    const Hop& next = c.hops[s->hop];
    const NodeState& n = w.nodes[next.node];
    if (!n.online || n.incarnation != next.incarnation) {  // gone: nobody will answer
      delete s;
      return;
    }
    n.mailbox->put_init(s, static_cast<uint64_t>(hidden_bytes(s->tokens, w.scenario.model.d_model)))
        ->detach();
  } else {
    c.reply->put_init(s, static_cast<uint64_t>(answer_bytes(s->tokens)))->detach();
  }
}

// The next step in the mailbox; a message whose sender died mid-transfer is lost.
Step* receive(sg4::Mailbox* mb) {
  for (;;) {
    try {
      return mb->get<Step>();
    } catch (const simgrid::NetworkFailureException&) {
    }
  }
}

// The Cancels that have reached node `n` by `now`: later steps they cover are
// dropped, and the compute of those already run here was wasted.
void take_cancels(World& w, NodeState& n, double now) {
  for (auto c = n.cancels_on_the_way.begin();
       c != n.cancels_on_the_way.end() && c->first <= now + 1e-9;) {
    const NodeState::Cancel& k = c->second;
    int64_t& below = n.cancelled_below[k.session];
    below = std::max(below, k.to + 1);
    auto runs = n.recent_runs.find(k.session);
    if (runs != n.recent_runs.end())
      std::erase_if(runs->second, [&](const std::pair<int64_t, double>& r) {
        if (r.first < k.from || r.first > k.to) return false;
        w.metrics.cancelled_compute(now, r.second);
        return true;
      });
    c = n.cancels_on_the_way.erase(c);
  }
}

bool cancelled_here(const World& w, const NodeState& n, const Step& s) {
  const int64_t session = s.chain->session;
  auto below = n.cancelled_below.find(session);
  return w.ended_sessions.count(session) > 0 ||
         (below != n.cancelled_below.end() && s.seq < below->second);
}

// Who sent a step, as the scheduler's shares count callers: its gateway.
uintptr_t caller_of(const Step& s) { return static_cast<uintptr_t>(s.chain->gateway) + 1; }

// A simulated time as the node's Clock has it (seconds since the run began).
Clock::time_point at(double seconds) {
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds)));
}

}  // namespace

void run_node(World* world, int node) {
  World& w = *world;
  NodeState& n = w.nodes[node];
  sg4::Mailbox* mb = n.mailbox;
  mb->set_receiver(sg4::Actor::self());
  const int max_batch = w.scenario.classes[n.class_index].max_batch_tokens;
  std::deque<Queued> queue;
  std::vector<node::QueuedWork> work;
  // The stage server's own scheduler: which sessions count as active, fair
  // shares of compute, what runs next (node/step_scheduler.h).
  node::StepScheduler scheduler;
  std::vector<node::StepScheduler::SessionSeen> open_last_active;
  bool waiting_on_shares = false;
  // A session counts as active from when its messages arrive, as on a real
  // node; not while its steps wait in the queue (then a node busy with 16
  // prompts kept giving each an eighth of the batch, where a real one,
  // seeing the sessions quiet for a second, runs them in whole batches).
  auto arrived = [&](Step* s) {
    queue.push_back({s, 0});
    n.last_seen[s->chain->session] = {sg4::Engine::get_clock(), caller_of(*s)};
  };
  for (;;) {
    if (waiting_on_shares) {
      // Every queued step waits for its session's share to decay: look again
      // soon, or when a new step comes.
      try {
        arrived(mb->get<Step>(std::chrono::duration<double>(node::StepScheduler::kShareRetry).count()));
      } catch (const simgrid::TimeoutException&) {
      } catch (const simgrid::NetworkFailureException&) {
      }
    }
    if (queue.empty()) arrived(receive(mb));
    while (mb->ready()) arrived(receive(mb));
    const double now = sg4::Engine::get_clock();
    take_cancels(w, n, now);
    work.clear();
    for (Queued& q : queue) {
      if (q.left == 0) q.left = q.step->tokens;
      const Hop& h = q.step->chain->hops[q.step->hop];
      node::QueuedWork qw;
      qw.session = static_cast<uintptr_t>(q.step->chain->session);
      qw.caller = caller_of(*q.step);
      qw.session_closed = cancelled_here(w, n, *q.step);
      qw.continuation = q.step->continuation;
      qw.tokens = q.left;
      qw.chunkable = q.step->bulk;
      qw.first_layer = h.first_layer;
      qw.last_layer = h.last_layer;
      work.push_back(qw);
    }
    // Sessions seen lately are the open ones, but for those whose request
    // ended (its Close): the scheduler hears of them as a real node does.
    open_last_active.clear();
    for (auto it = n.last_seen.begin(); it != n.last_seen.end();) {
      if (w.ended_sessions.count(it->first) > 0) {
        scheduler.session_closed(at(it->second.at_s), it->second.caller);
        it = n.last_seen.erase(it);
      } else if (now - it->second.at_s > 10) {
        it = n.last_seen.erase(it);
      } else {
        open_last_active.push_back({at(it->second.at_s), it->second.caller});
        ++it;
      }
    }
    auto ended = [&](const auto& c) { return w.ended_sessions.count(c.first) > 0; };
    std::erase_if(n.cancelled_below, ended);
    std::erase_if(n.recent_runs, ended);
    n.queued_steps = static_cast<int>(queue.size());
    // One client's sessions in turn do not share the node with each other's
    // ghosts (as stage_server.cc has it).
    const std::optional<uintptr_t> sole = node::StepScheduler::sole_caller(work);
    const int active =
        scheduler.active_sessions(open_last_active, at(now), sole ? &*sole : nullptr);
    const node::StepScheduler::Decision decision =
        scheduler.next_batch(work, max_batch, active, at(now), scheduler.bulk_chunk_tokens());
    const node::BatchPlan& plan = decision.plan;
    waiting_on_shares = decision.waiting_on_shares;
    if (!plan.dropped.empty()) {
      std::vector<bool> drop(queue.size(), false);
      for (size_t i : plan.dropped) drop[i] = true;
      std::deque<Queued> kept;
      for (size_t i = 0; i < queue.size(); ++i) {
        if (drop[i]) {
          delete queue[i].step;
        } else {
          kept.push_back(queue[i]);
        }
      }
      queue.swap(kept);
      continue;  // plan again without them
    }
    if (plan.batch.empty()) continue;  // every step waits for its share (see above)
    // The last stage answers a step built on a draft it rejected at once,
    // unrun (node/batch_runner.cc), and runs the batch without it.
    bool doomed = false;
    for (size_t i : plan.batch) {
      Step& s = *queue[i].step;
      if (s.hop + 1 != static_cast<int>(s.chain->hops.size())) continue;
      if (s.last_stage->take_up(static_cast<uint64_t>(s.seq))) continue;
      forward(w, queue[i].step);
      queue[i].step = nullptr;
      doomed = true;
    }
    if (doomed) {
      std::erase_if(queue, [](const Queued& q) { return q.step == nullptr; });
      continue;  // plan again without them
    }
    int b = 0, head_rows = 0;
    for (size_t k = 0; k < plan.batch.size(); ++k) {
      const Queued& q = queue[plan.batch[k]];
      b += plan.take[k];
      // The last stage's head: every row of a decode or verification step,
      // only the last of a prompt (when its final chunk runs).
      const Hop& h = q.step->chain->hops[q.step->hop];
      if (h.last_layer == w.scenario.model.n_layer)
        head_rows += !q.step->bulk ? plan.take[k] : (q.left - plan.take[k] <= 0 ? 1 : 0);
    }
    const Hop& h0 = queue[plan.batch[0]].step->chain->hops[queue[plan.batch[0]].step->hop];
    const double alone = batch_seconds(w, node, b, h0.last_layer - h0.first_layer, head_rows);
    const double started = sg4::Engine::get_clock();
    w.compute(alone);
    const double dt = sg4::Engine::get_clock() - started;
    // As a real node's batch line (node/batch_runner.cc), to set side by side.
    spdlog::debug("sim batch: {:.6f} s {}: {} tokens of {} steps, {:.0f} us", started, n.address, b,
                  plan.batch.size(), dt * 1e6);
    w.add_busy(node, sg4::Engine::get_clock(), dt);
    w.metrics.batch(sg4::Engine::get_clock(), b);
    const double slowdown = w.scenario.classes[n.class_index].slowdown;
    if (slowdown > 1) sg4::this_actor::sleep_for((slowdown - 1) * dt);
    std::vector<std::pair<uintptr_t, int>> ran;
    for (size_t k = 0; k < plan.batch.size(); ++k)
      ran.emplace_back(work[plan.batch[k]].caller, plan.take[k]);
    scheduler.batch_ran(ran, dt, at(sg4::Engine::get_clock()), decision.contended);
    scheduler.batch_speed(b, dt);
    std::vector<bool> done(queue.size(), false);
    for (size_t k = 0; k < plan.batch.size(); ++k) {
      Queued& q = queue[plan.batch[k]];
      q.left -= plan.take[k];
      q.step->timings.push_back({n.address, b, dt});
      if (q.left <= 0) done[plan.batch[k]] = true;
    }
    // Steps a Cancel covered while they ran are not pushed on (their compute
    // was wasted); the others are remembered in case a later one covers them.
    take_cancels(w, n, sg4::Engine::get_clock());
    std::deque<Queued> rest;
    const double per_message = w.scenario.classes[n.class_index].message_overhead_s;
    for (size_t k = 0; k < plan.batch.size(); ++k) {
      const Queued& q = queue[plan.batch[k]];
      if (!done[plan.batch[k]]) continue;
      const double share = dt * plan.take[k] / std::max(1, b);
      if (cancelled_here(w, n, *q.step)) {
        w.metrics.cancelled_compute(sg4::Engine::get_clock(), share);
        delete q.step;
        done[plan.batch[k]] = false;
        queue[plan.batch[k]].step = nullptr;
        continue;
      }
      auto& runs = n.recent_runs[q.step->chain->session];
      runs.emplace_back(q.step->seq, share);
      if (runs.size() > node::kMaxRecentRuns) runs.pop_front();
    }
    for (size_t i = 0; i < queue.size(); ++i) {
      if (queue[i].step == nullptr) continue;  // cancelled while it ran
      if (done[i]) {
        w.compute(per_message);
        forward(w, queue[i].step);
      } else {
        rest.push_back(queue[i]);
      }
    }
    queue.swap(rest);
    n.queued_steps = static_cast<int>(queue.size());
  }
}

}  // namespace swarm::sim
