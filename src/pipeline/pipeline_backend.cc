#include "pipeline/pipeline_backend.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <utility>
#include <thread>

#include "pipeline/audit_reference.h"
#include "pipeline/chain_session.h"
#include "pipeline/grpc_stage_transport.h"
#include "pipeline/request_audit.h"
#include "pipeline/model_drafter.h"
#include "pipeline/peer_probe.h"
#include "pipeline/ngram_drafter.h"
#include "pipeline/speculative_decoder.h"
#include "net/identity.h"
#include "net/model_id.h"
#include "net/status_convert.h"
#include "net/tls.h"
#include "swarm/v1/stage.grpc.pb.h"
#include "trust/reputation_book.h"

namespace swarm {
namespace {

namespace v1 = ::swarm::v1;
using Clock = std::chrono::steady_clock;

// Failures worth routing around and replaying for: the peer is gone, stalled or
// broken. A refusal (wrong model, bad request) is not.
bool recoverable(const Status& st) {
  switch (st.code()) {
    case Status::Code::kUnavailable:
    case Status::Code::kDeadlineExceeded:
    case Status::Code::kInternal:
    case Status::Code::kIOError:
    case Status::Code::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

// The surveyed peers no chain may use because they serve another model id, each
// with why ("other weights" of the same layout, or "another model"), or were
// excluded after a proven fraud, for the error that says no route exists: ""
// when there are none.
std::string excluded_peers(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                           const std::string& layout_id, int n_layer) {
  std::string s;
  for (const PeerSnapshot& p : peers) {
    const std::string range =
        " [" + std::to_string(p.first_layer) + "," + std::to_string(p.last_layer) + ")";
    if (p.model_id == model_id && p.n_layer == n_layer) {
      if (p.excluded) s += (s.empty() ? "" : "; ") + p.address + range + ": excluded after a proven fraud";
      continue;
    }
    s += (s.empty() ? "" : "; ") + p.address + range + " serves model " + p.model_id.substr(0, 16) + ": " +
         net::model_mismatch_reason(layout_id, p.layout_id);
  }
  return s.empty() ? s : "; peers excluded: " + s;
}

// Reputation's clock: Unix seconds, which a restarted gateway continues.
double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The backend's options as its sessions use them: its own step observer after
// the one given, and the transport and clock filled in where none was given.
PipelineOptions completed_for(PipelineOptions o, PipelineBackend* backend) {
  o.on_step_result = [given = std::move(o.on_step_result), backend](
                         const std::vector<ChainStage>& chain, const v1::StepResult& r) {
    if (given) given(chain, r);
    backend->observe_step(chain, r);
  };
  // One transport for every session, so emulated link delays and channels
  // are shared; and the clock every session and the speculation memory read.
  if (!o.transport) o.transport = std::make_shared<GrpcStageTransport>(o.link_delay);
  if (!o.clock) o.clock = &swarm::Clock::real();
  return o;
}

}  // namespace

std::string describe_chain(const std::vector<ChainStage>& chain) {
  std::string s;
  for (const ChainStage& c : chain)
    s += (s.empty() ? "" : " -> ") + c.address + " [" + std::to_string(c.first_layer) + "," +
         std::to_string(c.last_layer) + ")";
  return s;
}

PipelineBackend::PipelineBackend(std::string model_id, int n_layer, PipelineOptions options)
    : model_id_(std::move(model_id)),
      n_layer_(n_layer),
      options_(completed_for(std::move(options), this)),
      peers_(options_.peers),
      speculation_memory_(std::make_unique<SpeculationMemory>(*options_.clock)),
      reachability_(options_.reachability),
      started_(Clock::now()),
      audit_rng_(options_.audit_seed != 0 ? options_.audit_seed : std::random_device{}()),
      speed_watch_(options_.speed_check) {
  reprober_ = std::thread([this] { reprobe_loop(); });
  if (options_.audit_rate > 0 || options_.audit_sync)
    auditor_ = std::make_unique<Auditor>(
        [this](const AuditJob& job, const std::vector<std::string>& avoid) { return reference_for(job, avoid); },
        [this](const AuditJob& job, const std::vector<trust::Verdict>& v) { on_verdicts(job, v); },
        options_.audit_queue);
}

PipelineBackend::~PipelineBackend() {
  auditor_.reset();  // its thread calls back into this object
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  reprober_.join();
}

bool PipelineBackend::note_probe_locked(const net::PeerAddress& peer, const PeerProbe& probe,
                                        Clock::time_point asked) {
  const std::string key = peer_key(peer);
  if (probe.reached) {
    reachability_.reached(key);
    answered_at_[key] = probe.address_index;
  } else {
    reachability_.failed(key, asked, Clock::now(), probe.timed_out, probe.error);
  }
  std::string& logged = survey_error_[key];
  if (probe.error != logged) {
    const std::string pinned = peer.pin.empty() ? "" : " (pinned to " + peer.pin + ")";
    if (probe.error.empty())
      spdlog::info("peer {}{} reachable again at {}", peer.address, pinned, probe.address);
    else if (probe.timed_out)
      spdlog::warn("peer {}{} offers no route: {}; set aside, probed again with backoff",
                   peer.address, pinned, probe.error);
    else
      spdlog::warn("peer {}{} offers no route: {}", peer.address, pinned, probe.error);
    logged = probe.error;
  }
  return probe.reached;
}

Status PipelineBackend::survey_locked() {
  // Set-aside peers are left to the background prober: a survey never waits
  // for a peer that let its last probe run out.
  std::vector<net::PeerAddress> ask;
  std::vector<int> first;
  std::set<std::string> known;
  for (const net::PeerAddress& peer : peers_) {
    const std::string key = peer_key(peer);
    known.insert(key);
    if (!reachability_.survey_asks(key)) continue;
    ask.push_back(peer);
    auto it = answered_at_.find(key);
    first.push_back(it == answered_at_.end() ? 0 : it->second);
  }
  reachability_.retain(known);
  std::erase_if(answered_at_, [&](const auto& kv) { return !known.contains(kv.first); });
  std::erase_if(survey_error_, [&](const auto& kv) { return !known.contains(kv.first); });
  std::erase_if(last_seen_, [&](const auto& kv) { return !known.contains(kv.first); });
  const auto asked = Clock::now();
  const std::vector<PeerProbe> probes = options_.transport->survey(ask, first, options_.probe_timeout);
  // mu_ is held while the probes run, so our own sessions did not change
  // meanwhile: the answers' session counts include exactly these of ours.
  own_sessions_surveyed_ = own_sessions_;
  std::vector<PeerSnapshot> snap;
  for (size_t i = 0; i < ask.size(); ++i) {
    const PeerProbe& probe = probes[i];
    if (!note_probe_locked(ask[i], probe, asked)) continue;
    const v1::InfoResponse& info = probe.info;
    PeerSnapshot p;
    p.address = probe.address;
    p.public_key = probe.public_key;
    p.model_id = info.model_id();
    p.layout_id = info.layout_id();
    if (p.model_id != model_id_ && mismatch_logged_[p.address] != p.model_id)
      spdlog::warn("peer {} serves model {}, not {}: {}; it is not routed through", p.address,
                   p.model_id.substr(0, 16), model_id_.substr(0, 16),
                   net::model_mismatch_reason(options_.layout_id, p.layout_id));
    mismatch_logged_[p.address] = p.model_id;
    p.first_layer = info.first_layer();
    p.last_layer = info.last_layer();
    p.n_layer = info.n_layer();
    p.layer_tokens_per_second = info.layer_tokens_per_second();
    p.price_per_1k = info.price_per_1k();
    p.inexact = info.inexact();
    p.rtt_seconds = probe.rtt_seconds;
    p.draining = info.draining();
    p.active_sessions = info.active_sessions();
    p.queued_steps = info.queued_steps();
    p.kv_bytes_free = info.kv_bytes_free();
    p.kv_bytes_total = info.kv_bytes_total();
    // Only a verified identity names a node: a plaintext peer's claimed
    // node id would let it wear another's reputation.
    p.node_id = node_id_of_key(p.public_key);
    if (options_.reputation) {
      const std::string key = reputation_key(p);
      p.excluded = options_.reputation->excluded(key);
      p.reputation = options_.reputation->score(key, unix_now());
    }
    {
      std::lock_guard<std::mutex> audit_lock(audit_mu_);
      p.excluded = p.excluded || excluded_.contains(reputation_key(p));
    }
    last_seen_[peer_key(ask[i])] = p;
    snap.push_back(p);
  }
  {
    std::lock_guard<std::mutex> trust_lock(trust_mu_);
    announced_.clear();
    std::vector<std::string> keys;
    for (const PeerSnapshot& p : snap) {
      announced_[p.address] = {reputation_key(p), p.layer_tokens_per_second};
      keys.push_back(reputation_key(p));
    }
    speed_watch_.retain(keys);
  }
  snapshot_ = std::move(snap);
  surveyed_at_ = Clock::now();
  changed_.notify_all();  // the background prober's due times may have moved
  return Status::Ok();
}

void PipelineBackend::reprobe_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const auto next = reachability_.next_due();
    if (!next) {
      changed_.wait(lock);
      continue;
    }
    if (Clock::now() < *next) {
      changed_.wait_until(lock, *next);
      continue;
    }
    const std::vector<std::string> due = reachability_.due(Clock::now());
    std::vector<net::PeerAddress> ask;
    std::vector<int> first;
    for (const net::PeerAddress& peer : peers_) {
      const std::string key = peer_key(peer);
      if (std::find(due.begin(), due.end(), key) == due.end()) continue;
      ask.push_back(peer);
      auto it = answered_at_.find(key);
      first.push_back(it == answered_at_.end() ? 0 : it->second);
    }
    if (ask.size() != due.size()) {  // some are no longer peers
      std::set<std::string> known;
      for (const net::PeerAddress& peer : peers_) known.insert(peer_key(peer));
      reachability_.retain(known);
    }
    const auto asked = Clock::now();
    lock.unlock();
    const std::vector<PeerProbe> probes = options_.transport->survey(ask, first, options_.probe_timeout);
    lock.lock();
    bool answered = false;
    for (size_t i = 0; i < ask.size(); ++i)
      answered = note_probe_locked(ask[i], probes[i], asked) || answered;
    if (answered) {
      surveyed_at_ = {};  // survey again before the next route
      changed_.notify_all();
    }
  }
}

Result<double> PipelineBackend::price_per_1k_tokens() { return chain_price(/*wait=*/true); }

Result<double> PipelineBackend::price_per_1k_tokens_now() { return chain_price(/*wait=*/false); }

Result<double> PipelineBackend::chain_price(bool wait) {
  auto chain = route(/*wait_for_coverage=*/wait);
  if (!chain.ok()) return chain.status();
  std::lock_guard<std::mutex> lock(mu_);
  double price = 0;
  for (const ChainStage& stage : *chain)
    for (const PeerSnapshot& p : snapshot_)
      if (p.address == stage.address) {
        price += p.price_per_1k;
        break;
      }
  return price;
}

std::vector<PeerSnapshot> PipelineBackend::peers() {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

std::vector<PeerStanding> PipelineBackend::standing() {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = Clock::now();
  if (now - surveyed_at_ > options_.survey_interval) (void)survey_locked();
  apply_health_locked(Clock::now());
  std::vector<PeerStanding> out;
  for (const net::PeerAddress& peer : peers_) {
    const std::string key = peer_key(peer);
    PeerStanding s;
    s.address = peer.address;
    s.pin = peer.pin;
    s.announced_first = peer.announced_first;
    s.announced_last = peer.announced_last;
    const std::vector<std::string> addresses = peer.addresses();
    const PeerReachability::Unreachable* u = reachability_.find(key);
    for (const PeerSnapshot& p : snapshot_)
      if (u == nullptr && std::find(addresses.begin(), addresses.end(), p.address) != addresses.end()) {
        s.reachable = s.seen = true;
        s.last = p;
        break;
      }
    if (!s.reachable) {
      if (u != nullptr) {
        s.error = u->error;
        s.unreachable_seconds = std::chrono::duration<double>(Clock::now() - u->since).count();
      } else {
        s.error = "not surveyed yet";
      }
      if (auto it = last_seen_.find(key); it != last_seen_.end()) {
        s.seen = true;
        s.last = it->second;
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

void PipelineBackend::set_peers(std::vector<net::PeerAddress> peers) {
  auto key = [](const net::PeerAddress& p) {
    return std::make_tuple(p.address, p.pin, p.more_addresses, p.announced_first, p.announced_last);
  };
  auto less = [&](const net::PeerAddress& a, const net::PeerAddress& b) { return key(a) < key(b); };
  auto same = [&](const net::PeerAddress& a, const net::PeerAddress& b) { return key(a) == key(b); };
  std::sort(peers.begin(), peers.end(), less);
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<net::PeerAddress> have = peers_;
  std::sort(have.begin(), have.end(), less);
  if (std::equal(have.begin(), have.end(), peers.begin(), peers.end(), same)) return;
  peers_ = std::move(peers);
  surveyed_at_ = {};
  changed_.notify_all();
}

void PipelineBackend::set_relook(std::function<void()> relook) {
  std::lock_guard<std::mutex> lock(mu_);
  relook_ = std::move(relook);
}

void PipelineBackend::look_locked(std::unique_lock<std::mutex>& lock) {
  // One look at a time: requests that find no route together share it.
  if (looking_) {
    changed_.wait(lock, [&] { return !looking_; });
    return;
  }
  looking_ = true;
  if (std::function<void()> relook = relook_) {
    lock.unlock();
    relook();
    lock.lock();
  }
  survey_locked();
  last_look_ = Clock::now();
  looking_ = false;
  changed_.notify_all();
}

NoRouteView PipelineBackend::no_route_view_locked(Clock::time_point arrived) {
  NoRouteView v;
  v.now = Clock::now();
  v.request_arrived = arrived;
  v.gateway_started = started_;
  v.last_look = last_look_;
  weigh_uncovered(covered_layers(snapshot_, model_id_, n_layer_), peers_, reachability_,
                  /*can_look_up=*/static_cast<bool>(relook_), v);
  return v;
}

Result<std::vector<ChainStage>> PipelineBackend::route(bool wait_for_coverage) {
  return route_holding(wait_for_coverage, nullptr);
}

Result<std::vector<ChainStage>> PipelineBackend::route_holding(bool wait_for_coverage,
                                                               std::vector<ChainStage>* held) {
  const auto arrived = Clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (Clock::now() - surveyed_at_ > options_.survey_interval) SWARM_RETURN_IF_ERROR(survey_locked());
    apply_health_locked(Clock::now());
    apply_own_sessions_locked();
    auto chain = choose_chain(snapshot_, model_id_, n_layer_, options_.costs);
    if (chain.ok() && held) {
      count_own_sessions_locked(*held, -1);
      count_own_sessions_locked(*chain, +1);
      *held = *chain;
    }
    if (chain.ok() || chain.status().code() != Status::Code::kUnavailable) return chain;
    NoRouteStep step = next_no_route_step(no_route_view_locked(arrived), options_.coverage_wait);
    if (!wait_for_coverage && step.action == NoRouteAction::kWait) step.action = NoRouteAction::kRefuse;
    switch (step.action) {
      case NoRouteAction::kLookNow:
        look_locked(lock);
        break;
      case NoRouteAction::kWait:
        changed_.wait_until(lock, step.wake_at);
        break;
      case NoRouteAction::kRefuse: {
        Status why = explain_no_route(chain.status(), covered_layers(snapshot_, model_id_, n_layer_),
                                      peers_, reachability_);
        // Peers that answered but serve other weights (or another model) are
        // named too: they explain a gap as well as unreachable ones do.
        const std::string excluded =
            excluded_peers(snapshot_, model_id_, options_.layout_id, n_layer_);
        if (!excluded.empty() && why.code() == Status::Code::kUnavailable)
          why = Status::Unavailable(why.message() + excluded);
        return why;
      }
    }
  }
}

void PipelineBackend::apply_health_locked(Clock::time_point now) {
  for (PeerSnapshot& p : snapshot_) {
    auto failed = failed_at_.find(p.address);
    p.recently_failed =
        failed != failed_at_.end() && now - failed->second < options_.failure_memory;
    p.on_probation = !p.recently_failed && returning_.count(p.address) > 0;
  }
}

void PipelineBackend::apply_own_sessions_locked() {
  auto count = [](const std::map<std::string, int>& m, const std::string& address) {
    auto it = m.find(address);
    return it == m.end() ? 0 : it->second;
  };
  for (PeerSnapshot& p : snapshot_) {
    p.own_sessions = count(own_sessions_, p.address);
    p.own_sessions_reported = count(own_sessions_surveyed_, p.address);
  }
}

void PipelineBackend::count_own_sessions_locked(const std::vector<ChainStage>& chain, int delta) {
  for (const ChainStage& s : chain)
    if ((own_sessions_[s.address] += delta) <= 0) own_sessions_.erase(s.address);
}

void PipelineBackend::release_held(std::vector<ChainStage>* held) {
  std::lock_guard<std::mutex> lock(mu_);
  count_own_sessions_locked(*held, -1);
  held->clear();
}

void PipelineBackend::end_probation(const std::vector<ChainStage>& chain) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = Clock::now();
  for (const ChainStage& s : chain) {
    auto failed = failed_at_.find(s.address);
    if (failed != failed_at_.end() && now - failed->second < options_.failure_memory) continue;
    if (returning_.erase(s.address) > 0)
      spdlog::info("peer {} is back: routed through again", s.address);
  }
}

void PipelineBackend::report_failure(const std::string& address, const Status& why) {
  if (address.empty()) return;
  node_failures_.fetch_add(1, std::memory_order_relaxed);
  bool known;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = Clock::now();
    auto failed = failed_at_.find(address);
    known = failed != failed_at_.end() && now - failed->second < options_.failure_memory;
    failed_at_[address] = now;
    returning_.insert(address);
    surveyed_at_ = {};  // look at the swarm again before the next route
    if (!known)
      spdlog::warn("peer {} failed ({}); avoided for {} ms", address, why.message(),
                   options_.failure_memory.count());
  }
  // One incident is one event: the sessions that all fail on one hung node
  // within its failure memory count once. A full node (RESOURCE_EXHAUSTED)
  // did nothing wrong.
  if (known || !options_.reputation) return;
  std::optional<trust::ReputationEvent> event;
  if (why.code() == Status::Code::kDeadlineExceeded)
    event = trust::ReputationEvent::kTimeout;
  else if (why.code() == Status::Code::kUnavailable || why.code() == Status::Code::kIOError ||
           why.code() == Status::Code::kInternal)
    event = trust::ReputationEvent::kDisconnect;
  if (event)
    options_.reputation->record(reputation_key_of(address), *event, unix_now(), why.message());
}

std::string PipelineBackend::reputation_key(const PeerSnapshot& peer) {
  return peer.node_id.empty() ? peer.address : peer.node_id;
}

std::string PipelineBackend::reputation_key_of(const std::string& address) {
  std::lock_guard<std::mutex> lock(trust_mu_);
  auto it = announced_.find(address);
  return it == announced_.end() ? address : it->second.key;
}

void PipelineBackend::observe_step(const std::vector<ChainStage>& chain, const v1::StepResult& result) {
  if (!options_.reputation || result.timings_size() == 0) return;
  // Push mode: stage i appended timings[i]. Relay mode: one stage's answer,
  // found by the address it names.
  const bool by_position = static_cast<size_t>(result.timings_size()) == chain.size();
  for (int i = 0; i < result.timings_size(); ++i) {
    const v1::StageTiming& t = result.timings(i);
    const ChainStage* stage = by_position ? &chain[static_cast<size_t>(i)] : nullptr;
    for (size_t k = 0; !stage && k < chain.size(); ++k)
      if (chain[k].address == t.address()) stage = &chain[k];
    if (!stage) continue;
    Announced announced;
    {
      std::lock_guard<std::mutex> lock(trust_mu_);
      auto it = announced_.find(stage->address);
      if (it == announced_.end()) continue;
      announced = it->second;
    }
    const trust::SpeedSample sample{t.compute_us(), t.batch_tokens(),
                                    stage->last_layer - stage->first_layer};
    const auto lie = speed_watch_.observe(announced.key, announced.layer_tokens_per_second, sample);
    if (!lie) continue;
    char detail[160];
    std::snprintf(detail, sizeof detail,
                  "announced %.0f layer-tokens/s, measured %.0f (median of %zu steps)",
                  lie->announced, lie->measured, lie->samples);
    spdlog::warn("peer {} lies about its speed: {}", stage->address, detail);
    options_.reputation->record(announced.key, trust::ReputationEvent::kSpeedLie, unix_now(), detail);
  }
}

std::string PipelineBackend::probe_for_failure(const std::vector<ChainStage>& chain) {
  // After a timeout in push mode any stage may be the stalled one. One that
  // another session found failed a moment ago is the likely one; else the
  // first that cannot answer Info in time.
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = Clock::now();
    for (const ChainStage& s : chain) {
      auto failed = failed_at_.find(s.address);
      if (failed != failed_at_.end() && now - failed->second < options_.failure_memory)
        return s.address;
    }
  }
  const int silent = options_.transport->first_silent_stage(chain, options_.deadlines.probe_timeout);
  if (silent >= 0) return chain[static_cast<size_t>(silent)].address;
  return chain.empty() ? "" : chain.back().address;
}

bool PipelineBackend::other_route(const std::vector<ChainStage>& chain) {
  std::lock_guard<std::mutex> lock(mu_);
  apply_health_locked(Clock::now());
  apply_own_sessions_locked();
  return other_chain_exists(snapshot_, chain, model_id_, n_layer_, options_.costs);
}

void PipelineBackend::release_waiting() {
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    ++releases_;
  }
  wait_cv_.notify_all();
}

Status PipelineBackend::open_when_room(std::unique_ptr<ChainSession>& session,
                                       std::vector<ChainStage>& chain, const SamplingParams& sp,
                                       int max_length, Status refusal, bool* released,
                                       std::vector<ChainStage>* held, int logprobs) {
  const int waiting = ++waiting_for_room_;
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { --n; }
  } leave{waiting_for_room_};
  if (waiting > options_.max_queue)
    return Status::ResourceExhausted(
        "the swarm is busy: " + refusal.message() + "; " + std::to_string(waiting - 1) +
        " requests already wait for room, the most that may (--max-queue " +
        std::to_string(options_.max_queue) + "); retry later");
  const auto start = Clock::now();
  uint64_t releases;
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    releases = releases_;
  }
  thread_local std::mt19937 rng(std::random_device{}());
  auto backoff = std::chrono::milliseconds(50);
  Status st = refusal;
  while (st.code() == Status::Code::kResourceExhausted) {
    const auto pause = backoff + std::chrono::milliseconds(rng() % (backoff.count() / 2 + 1));
    if (Clock::now() + pause > start + options_.queue_timeout) {
      char waited[96];
      std::snprintf(waited, sizeof waited, "waited %.1f s (--queue-timeout %.1f s)",
                    std::chrono::duration<double>(Clock::now() - start).count(),
                    std::chrono::duration<double>(options_.queue_timeout).count());
      return Status::ResourceExhausted(
          std::string("the swarm is busy: ") + waited + " for room on the chain, as number " +
          std::to_string(waiting) + " of those waiting; the last answer: " + st.message() +
          "; retry later");
    }
    session->abandon();
    {
      std::unique_lock<std::mutex> lock(wait_mu_);
      if (wait_cv_.wait_for(lock, pause, [&] { return releases_ != releases; })) {
        *released = true;
        return Status::Unavailable("the gateway is stopping");
      }
    }
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(1));
    // A twin may have room.
    if (auto next = route_holding(false, held); next.ok()) chain = std::move(next).value();
    session = std::make_unique<ChainSession>(chain, options_, &step_times_);
    session->set_logprobs(logprobs);
    st = session->open(model_id_, n_layer_, sp, max_length);
  }
  return st;
}

Result<GenerationResult> PipelineBackend::generate(const GenerationRequest& request, const TokenCallback& on_token) {
  if (request.prompt.empty()) return Status::InvalidArgument("the prompt is empty");
  const int prompt_len = static_cast<int>(request.prompt.size());
  if (prompt_len >= options_.context_length)
    return Status::InvalidArgument("the prompt is " + std::to_string(prompt_len) + " tokens; the context holds " +
                                   std::to_string(options_.context_length));
  // The last stage scores a step's tokens in one head call (Step.score_tokens).
  constexpr int kMaxScoredPrompt = 256;
  if (request.prompt_logprobs && prompt_len > kMaxScoredPrompt)
    return Status::InvalidArgument("the prompt is " + std::to_string(prompt_len) +
                                   " tokens; through the swarm, echo with logprobs scores at most " +
                                   std::to_string(kMaxScoredPrompt));
  // The chain this request's session runs on, counted as load on its peers
  // until the request ends.
  std::vector<ChainStage> held;
  struct Release {
    PipelineBackend* backend;
    std::vector<ChainStage>* held;
    ~Release() { backend->release_held(held); }
  } release{this, &held};
  auto chain = route_holding(/*wait_for_coverage=*/true, &held);
  if (!chain.ok()) return chain.status();
  end_probation(*chain);
  auto announce = [&](const std::vector<ChainStage>& c) {
    if (request.on_chain) request.on_chain(c);
  };
  announce(*chain);

  GenerationResult result;
  result.prompt_tokens = prompt_len;
  result.route = describe_chain(*chain);
  const SamplingParams& sp = request.sampling;
  int budget = options_.context_length - prompt_len;
  if (sp.max_tokens >= 0) budget = std::min(budget, sp.max_tokens);

  int recoveries = 0;
  // A step past the step timeout on a chain no failover could leave, with
  // every stage answering, is waited on (ChainSession::set_ceiling_wait): a
  // replay would queue its tokens again behind the same queues. Each wait
  // costs a failover of the request's budget, so a stage that answers Info
  // and never computes holds a request no longer than before.
  auto may_wait = [&](const std::vector<ChainStage>& c) {
    if (recoveries >= options_.max_recoveries || other_route(c)) return false;
    ++recoveries;
    ceiling_waits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  };
  auto session = std::make_unique<ChainSession>(*chain, options_, &step_times_);
  session->set_logprobs(request.logprobs);
  Status opened = session->open(model_id_, n_layer_, sp, prompt_len + budget);
  if (opened.code() == Status::Code::kResourceExhausted) {  // a node is full: wait for room
    bool released = false;
    opened = open_when_room(session, *chain, sp, prompt_len + budget, opened, &released, &held,
                            request.logprobs);
    result.route = describe_chain(*chain);
    announce(*chain);
    if (released || opened.code() == Status::Code::kResourceExhausted) {  // not a node failure
      session->abandon();
      return opened;
    }
  }
  session->set_ceiling_wait(may_wait);
  std::vector<int32_t> fed;  // every token the chain has taken, in order: replayed after a failure
  // The sessions the request ran, for audits and the ledger (trust).
  const bool greedy = greedy_sampling(sp);
  std::vector<trust::AuditedSession> ran;
  auto retire = [&](const ChainSession& s) {
    if (!s.records().empty()) ran.push_back(audited_session(model_id_, s.chain(), s.records(), greedy));
  };
  // --audit-sync: this request's own reference run, for the chain it is on.
  std::unique_ptr<ReferenceRun> sync_run;
  std::vector<std::pair<int, int>> sync_ranges;
  auto sync_check = [&](const std::vector<int32_t>& history) -> Status {
    std::vector<std::pair<int, int>> ranges;
    for (const ChainStage& c : session->chain()) ranges.emplace_back(c.first_layer, c.last_layer);
    int from = 0;
    if (sync_run && ranges == sync_ranges) {
      from = std::min<int>(sync_run->length(), static_cast<int>(history.size()));
    } else {
      sync_run = std::make_unique<ReferenceRun>(*options_.audit_local, ranges,
                                                options_.wire_f16 ? v1::Tensor::F16 : v1::Tensor::F32,
                                                prompt_len + budget + 1);
      sync_ranges = ranges;
    }
    SWARM_RETURN_IF_ERROR(sync_run->extend({history.begin() + from, history.end()}, from));
    AuditJob job;
    job.session = audited_session(model_id_, session->chain(), session->records(), greedy);
    job.history = history;
    job.window = static_cast<int>(history.size());
    const std::vector<trust::Verdict> verdicts = trust::judge(job.session, history, sync_run->rows());
    on_verdicts(job, verdicts);
    for (const trust::Verdict& v : verdicts) {
      if (v.kind == trust::Verdict::Kind::kPass) continue;
      const std::string& culprit = session->chain()[v.stage].address;
      // Avoided from now on; reputation already heard the verdict (on_verdicts).
      report_failure(culprit, Status::Corruption(std::string("audit: ") + trust::to_string(v.kind)));
      return Status::Unavailable("audit of " + culprit + ": " + v.reason);
    }
    return Status::Ok();
  };
  // Routes around the failed stage and rebuilds the session's state on a new
  // chain by feeding it everything fed so far plus `input` in one step. The
  // kernels are batch-invariant, so the rebuilt KV caches (and the greedy token
  // this step yields) are exactly those the lost chain had.
  auto recover = [&](Status failure, const std::vector<int32_t>& input) -> Result<int32_t> {
    while (recoverable(failure) && recoveries < options_.max_recoveries) {
      ++recoveries;
      recoveries_.fetch_add(1, std::memory_order_relaxed);
      report_failure(session->suspect().empty() ? probe_for_failure(session->chain()) : session->suspect(),
                     failure);
      retire(*session);
      session->abandon();
      auto next = route_holding(false, &held);
      if (!next.ok()) return next.status().annotate("after " + failure.message());
      end_probation(*next);
      announce(*next);
      result.route = describe_chain(*next) + " (recovered " + std::to_string(recoveries) + "x from: " +
                     failure.message() + ")";
      session = std::make_unique<ChainSession>(*next, options_, &step_times_);
      session->set_logprobs(request.logprobs);
      session->set_ceiling_wait(may_wait);
      failure = session->open(model_id_, n_layer_, sp, prompt_len + budget);
      if (!failure.ok()) continue;
      std::vector<int32_t> replay = fed;
      replay.insert(replay.end(), input.begin(), input.end());
      // The first step's replay is the prompt: it scores it as the step would have.
      auto token = session->step(replay, 0, request.prompt_logprobs && fed.empty());
      if (token.ok()) return token;
      failure = token.status();
    }
    return failure;
  };
  const auto t0 = Clock::now();
  auto t_first = t0;
  std::vector<int32_t> input = request.prompt;
  result.finish_reason = "length";
  const SpeculationOptions& spec = options_.speculation;
  // With --audit-sync every step is checked before its token goes out: plain decoding.
  // Logprobs come with plain steps only: a request for them is not speculated.
  const bool speculate = spec.mode != SpeculationMode::kOff && options_.push && !options_.audit_sync &&
                         (spec.mode != SpeculationMode::kDraft || spec.draft) &&
                         request.logprobs < 0 && !request.prompt_logprobs;
  // Named now, so that a request that ends at its first token reports too.
  result.speculation.drafter = !speculate                             ? "off"
                               : spec.mode == SpeculationMode::kDraft ? "draft"
                                                                      : "ngram";
  bool finished = false;
  int generated = 0;
  for (; generated < budget; ++generated) {
    Result<int32_t> token =
        opened.ok() ? session->step(input, static_cast<int>(fed.size()), request.prompt_logprobs && fed.empty())
                    : Result<int32_t>(opened);
    opened = Status::Ok();
    if (!token.ok()) token = recover(token.status(), input);
    while (token.ok() && options_.audit_sync && options_.audit_local) {
      std::vector<int32_t> history = fed;
      history.insert(history.end(), input.begin(), input.end());
      const Status checked = sync_check(history);
      if (checked.ok()) break;
      token = recover(checked, input);
    }
    if (!token.ok()) {
      retire(*session);
      session->abandon();
      finish_trust(ran, fed, sp, nullptr);
      return token.status();
    }
    if (generated == 0) t_first = Clock::now();
    if (request.prompt_logprobs && fed.empty() && request.on_prompt_logprobs)
      request.on_prompt_logprobs(session->scores());
    ++result.speculation.plain_steps;
    fed.insert(fed.end(), input.begin(), input.end());
    const bool stop_token = std::find(sp.stop_tokens.begin(), sp.stop_tokens.end(), *token) != sp.stop_tokens.end();
    if (stop_token) {
      result.finish_reason = "stop";
      finished = true;
      break;
    }
    ++result.completion_tokens;
    if (request.logprobs >= 0 && request.on_logprob) request.on_logprob(session->last_logprob());
    if (!on_token(*token)) {
      result.finish_reason = "stop";
      finished = true;
      break;
    }
    input = {*token};
    if (speculate) {
      ++generated;
      break;  // the rest is decoded speculatively
    }
  }
  if (speculate && !finished && generated < budget) {
    std::unique_ptr<Drafter> drafter;
    if (spec.mode == SpeculationMode::kDraft)
      drafter = std::make_unique<ModelDrafter>(spec.draft, sp, prompt_len + budget + 1);
    else
      drafter = std::make_unique<NgramDrafter>();
    SpeculationReport& stats = result.speculation;
    auto emit = [&](int32_t t) {
      if (std::find(sp.stop_tokens.begin(), sp.stop_tokens.end(), t) != sp.stop_tokens.end()) {
        result.finish_reason = "stop";
        return false;
      }
      ++result.completion_tokens;
      ++generated;
      if (!on_token(t)) {
        result.finish_reason = "stop";
        return false;
      }
      return generated < budget;
    };
    auto remaining = [&] { return budget - generated; };
    int32_t anchor = input[0];
    for (;;) {
      const Status st = decode_speculatively(*session, *drafter, spec, *speculation_memory_, fed,
                                             anchor, emit, remaining, stats);
      if (st.ok()) break;
      // Replay what was verified on a new chain; the token it yields is the
      // one after the anchor.
      auto token = recover(st, {anchor});
      if (!token.ok()) {
        retire(*session);
        session->abandon();
        finish_trust(ran, fed, sp, nullptr);
        return token.status();
      }
      fed.push_back(anchor);
      ++stats.plain_steps;
      if (!emit(*token)) break;
      anchor = *token;
    }
  }
  session->close();
  retire(*session);
  finish_trust(ran, fed, sp, &result);
  const auto t_end = Clock::now();
  result.prompt_seconds = std::chrono::duration<double>(t_first - t0).count();
  result.generation_seconds = std::chrono::duration<double>(t_end - t_first).count();
  return result;
}

void PipelineBackend::finish_trust(const std::vector<trust::AuditedSession>& ran,
                                   const std::vector<int32_t>& history, const SamplingParams& sampling,
                                   GenerationResult* result) {
  if (result) {
    std::map<std::string, double> prices;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const PeerSnapshot& p : snapshot_) prices[p.address] = p.price_per_1k;
    }
    auto price_of = [&](const std::string& address) {
      auto it = prices.find(address);
      return it == prices.end() ? 0.0 : it->second;
    };
    for (const trust::AuditedSession& s : ran) add_node_work(s, price_of, &result->work);
  }
  if (!auditor_ || options_.audit_rate <= 0) return;
  const v1::Tensor::DType dtype = options_.wire_f16 ? v1::Tensor::F16 : v1::Tensor::F32;
  for (const trust::AuditedSession& s : ran) {
    AuditJob job;
    {
      std::lock_guard<std::mutex> lock(audit_mu_);
      // Probation: a node without a record of passed audits is audited more.
      auto rate_of = [&](const std::string& key) {
        if (audit_rate_of_) return audit_rate_of_(key, options_.audit_rate);
        if (options_.reputation) return options_.reputation->audit_rate(key, options_.audit_rate, unix_now());
        return options_.audit_rate;
      };
      job = plan_audit(s, history, dtype, rate_of, audit_rng_);
    }
    if (!s.greedy) job.sampling = sampling;
    if (job.window > 0 && !auditor_->submit(std::move(job))) {
      int64_t drops = 0;
      {
        std::lock_guard<std::mutex> lock(audit_mu_);
        ++audit_drops_unlogged_;
        // Logging only: the wall clock decides nothing here.
        const auto now = std::chrono::steady_clock::now();
        if (audit_drop_logged_ == std::chrono::steady_clock::time_point{} ||
            now - audit_drop_logged_ >= std::chrono::minutes(1)) {
          drops = std::exchange(audit_drops_unlogged_, 0);
          audit_drop_logged_ = now;
        }
      }
      if (drops > 0)
        spdlog::warn("audit queue full ({} sessions): {} audit(s) dropped since the last warning, "
                     "{} in all (raise --audit-threads or --audit-queue, or lower --audit-rate)",
                     options_.audit_queue, drops, auditor_->stats().dropped);
    }
  }
}

Result<Reference> PipelineBackend::reference_for(const AuditJob& job, const std::vector<std::string>& avoid) {
  if (!options_.audit_local) return remote_reference(job, avoid);
  std::vector<std::pair<int, int>> ranges;
  for (const trust::AuditedStage& s : job.session.stages) ranges.emplace_back(s.first_layer, s.last_layer);
  const std::vector<int32_t> tokens(job.history.begin(), job.history.begin() + job.window);
  auto rows = options_.audit_local->compute(tokens, ranges, job.wire_dtype, job.sampling ? &*job.sampling : nullptr,
                                            job.session.steps, job.session.has_inexact_stage());
  if (!rows.ok()) return rows.status();
  return Reference{std::move(rows).value(), /*trusted=*/true, {}};
}

Result<Reference> PipelineBackend::remote_reference(const AuditJob& job, const std::vector<std::string>& avoid) {
  // One node per audited range: serving it whole, not excluded, not the
  // audited node there, preferring nodes outside the audited chain. Where no
  // other node serves the range, the audited node itself: then it supplies
  // the next stage's input, and two different results of its own for the
  // same input are a fraud it signed twice.
  std::vector<ChainStage> chain;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> audited;
    for (const trust::AuditedStage& s : job.session.stages) audited.insert(s.address);
    for (size_t k = 0; k < job.session.stages.size(); ++k) {
      const trust::AuditedStage& s = job.session.stages[k];
      const std::string& shun = k < avoid.size() ? avoid[k] : std::string();
      const PeerSnapshot* best = nullptr;
      for (const PeerSnapshot& p : snapshot_) {
        if (p.model_id != model_id_ || p.draining || p.excluded || p.recently_failed ||
            p.first_layer > s.first_layer || p.last_layer < s.last_layer || p.address == s.address ||
            p.address == shun)
          continue;
        if (!best || (audited.contains(best->address) && !audited.contains(p.address))) best = &p;
      }
      if (!best)
        for (const PeerSnapshot& p : snapshot_)
          if (p.address == s.address && p.model_id == model_id_ && !p.excluded && p.address != shun) best = &p;
      if (!best)
        return Status::Unavailable("no other node serves layers " + std::to_string(s.first_layer) + ":" +
                                   std::to_string(s.last_layer) + " to audit " + s.address + " against");
      chain.push_back({best->address, s.first_layer, s.last_layer, best->public_key, best->inexact});
    }
  }
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.repeat_penalty = 1;
  // A chain with an inexact stage is judged by sketches: the reference's too.
  const bool inexact = job.session.has_inexact_stage();
  ChainSession session(chain, options_, nullptr);
  SWARM_RETURN_IF_ERROR(session.open(model_id_, n_layer_, greedy, job.window));
  // The last tokens sampled at every position (the greedy choices an audit
  // compares; at most what a node samples in one step), the rest before them.
  constexpr int kSampledTail = 256;
  const int tail = std::min(job.window, kSampledTail);
  std::vector<ChainRun> runs;
  // With sketches of every row, a run is at most kSampledTail long (a node
  // refuses longer ones: they would be messages of megabytes).
  const int head_run = inexact ? kSampledTail : job.window;
  for (int at = 0; at < job.window - tail; at += head_run) {
    ChainRun head;
    head.tokens.assign(job.history.begin() + at, job.history.begin() + std::min(at + head_run, job.window - tail));
    head.position = at;
    head.row_hashes = true;
    head.sketches = inexact;
    runs.push_back(std::move(head));
  }
  ChainRun last;
  last.tokens.assign(job.history.begin() + (job.window - tail), job.history.begin() + job.window);
  last.position = job.window - tail;
  last.sample_all = true;
  last.row_hashes = true;
  last.sketches = inexact;
  runs.push_back(std::move(last));
  Reference ref;
  ref.rows.output_rows.resize(chain.size());
  if (inexact) ref.rows.sketches.assign(chain.size(), std::vector<trust::RowSketch>(static_cast<size_t>(job.window)));
  ref.rows.argmax.assign(static_cast<size_t>(job.window - tail), -1);
  for (const ChainStage& c : chain) ref.nodes.push_back(c.address);
  for (const ChainRun& run : runs) {
    auto id = session.send_run(run);
    if (!id.ok()) return id.status();
    auto result = session.next_result([&](uint64_t s) { return s == *id; });
    if (!result.ok()) return result.status();
    if (result->commitments_size() != static_cast<int>(chain.size()))
      return Status::Internal("audit reference: " + std::to_string(result->commitments_size()) +
                              " commitments for a chain of " + std::to_string(chain.size()));
    for (size_t k = 0; k < chain.size(); ++k) {
      const v1::Commitment& c = result->commitments(static_cast<int>(k));
      if (c.output_rows_size() != static_cast<int>(run.tokens.size()))
        return Status::Internal("audit reference: " + chain[k].address + " gave " +
                                std::to_string(c.output_rows_size()) + " row hashes for " +
                                std::to_string(run.tokens.size()) + " rows");
      for (const std::string& h : c.output_rows()) {
        auto hash = trust::hash_field(h, "Commitment.output_rows");
        if (!hash.ok()) return hash.status();
        ref.rows.output_rows[k].push_back(*hash);
      }
      for (const v1::RowSketch& s : c.sketches()) {
        auto sketch = trust::from_proto(s);
        if (!sketch.ok()) return sketch.status();
        if (!inexact || sketch->position < run.position ||
            sketch->position >= run.position + static_cast<int>(run.tokens.size()))
          continue;
        ref.rows.sketches[k][static_cast<size_t>(sketch->position)] = std::move(sketch).value();
      }
    }
    if (run.sample_all) ref.rows.argmax.insert(ref.rows.argmax.end(), result->tokens().begin(), result->tokens().end());
  }
  session.close();
  if (ref.rows.argmax.size() != static_cast<size_t>(job.window)) ref.rows.argmax.clear();
  return ref;
}

void PipelineBackend::on_verdicts(const AuditJob& job, const std::vector<trust::Verdict>& verdicts) {
  VerdictFn listener;
  {
    std::lock_guard<std::mutex> lock(audit_mu_);
    for (const trust::Verdict& v : verdicts) {
      const trust::AuditedStage& stage = job.session.stages[v.stage];
      const std::string key = stage.node_id.empty() ? stage.address : stage.node_id;
      if (v.kind == trust::Verdict::Kind::kFraud) {
        if (excluded_.insert(key).second)
          spdlog::error("audit: node {} at {} (layers {}:{}) committed a wrong result: {}; it is excluded",
                        key.substr(0, 16), stage.address, stage.first_layer, stage.last_layer, v.reason);
      } else if (v.kind != trust::Verdict::Kind::kPass) {
        spdlog::warn("audit: node {} at {}: {} ({})", key.substr(0, 16), stage.address,
                     trust::to_string(v.kind), v.reason);
      }
    }
    listener = verdict_listener_;
  }
  // Reputation: a pass or a failure per stage audited, a proven fraud with its proof.
  if (options_.reputation) {
    for (const trust::Verdict& v : verdicts) {
      const trust::AuditedStage& stage = job.session.stages[v.stage];
      const std::string key = stage.node_id.empty() ? stage.address : stage.node_id;
      if (v.kind == trust::Verdict::Kind::kFraud) {
        (void)options_.reputation->store_proof(key, fraud_proof(job, v), v.reason, unix_now());
      } else if (v.kind != trust::Verdict::Kind::kPass) {
        (void)options_.reputation->record(key, trust::ReputationEvent::kAuditDisputed, unix_now(),
                                          std::string(trust::to_string(v.kind)) + ": " + v.reason);
      } else if (v.steps_checked > 0) {
        (void)options_.reputation->record(key, trust::ReputationEvent::kAuditPassed, unix_now(),
                                          std::to_string(v.steps_checked) + " steps checked");
      }
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    surveyed_at_ = {};  // the next route sees the exclusions
  }
  if (listener) listener(job, verdicts);
}

void PipelineBackend::set_verdict_listener(VerdictFn listener) {
  std::lock_guard<std::mutex> lock(audit_mu_);
  verdict_listener_ = std::move(listener);
}

void PipelineBackend::set_audit_rate_of(std::function<double(const std::string&, double)> rate_of) {
  std::lock_guard<std::mutex> lock(audit_mu_);
  audit_rate_of_ = std::move(rate_of);
}

AuditStats PipelineBackend::audit_stats() const { return auditor_ ? auditor_->stats() : AuditStats{}; }

void PipelineBackend::wait_audits() {
  if (auditor_) auditor_->wait_idle();
}

std::set<std::string> PipelineBackend::excluded() const {
  std::lock_guard<std::mutex> lock(audit_mu_);
  return excluded_;
}

}  // namespace swarm
