#include "pipeline/pipeline_backend.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <thread>

#include "pipeline/chain_session.h"
#include "pipeline/model_drafter.h"
#include "pipeline/ngram_drafter.h"
#include "pipeline/speculative_decoder.h"
#include "net/model_id.h"
#include "net/status_convert.h"
#include "net/tls.h"
#include "swarm/v1/stage.grpc.pb.h"

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
// with why ("other weights" of the same layout, or "another model"), for the
// error that says no route exists: "" when there are none.
std::string excluded_peers(const std::vector<PeerSnapshot>& peers, const std::string& model_id,
                           const std::string& layout_id, int n_layer) {
  std::string s;
  for (const PeerSnapshot& p : peers) {
    if (p.model_id == model_id && p.n_layer == n_layer) continue;
    s += (s.empty() ? "" : "; ") + p.address + " [" + std::to_string(p.first_layer) + "," +
         std::to_string(p.last_layer) + ") serves model " + p.model_id.substr(0, 16) + ": " +
         net::model_mismatch_reason(layout_id, p.layout_id);
  }
  return s.empty() ? s : "; peers excluded: " + s;
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
      options_(std::move(options)),
      peers_(options_.peers),
      speculation_memory_(std::make_unique<SpeculationMemory>()) {}

PipelineBackend::~PipelineBackend() = default;

namespace {

// The hex key a pinned peer's hops are pinned to: its Info's key, which must
// satisfy the pin (the channel's handshake already checked the certificate; a
// node-id pin learns the full key here). "" for a plaintext peer.
Result<std::string> pinned_key_of(const net::PeerAddress& peer, const v1::InfoResponse& info) {
  if (peer.pin.empty()) return std::string();
  auto pin = net::KeyPin::Parse(peer.pin);
  if (!pin.ok()) return pin.status();
  if (info.public_key().size() != net::kPublicKeyBytes)
    return Status::Unavailable("its Info reports no Ed25519 public key");
  net::PublicKey key{};
  std::copy(info.public_key().begin(), info.public_key().end(), key.begin());
  if (!pin->matches(key))
    return Status::Unavailable("its Info reports key " + net::to_hex(key.data(), key.size()) +
                               ", not the pinned " + pin->hex());
  return net::to_hex(key.data(), key.size());
}

}  // namespace

Status PipelineBackend::survey_locked() {
  std::vector<PeerSnapshot> snap;
  for (const net::PeerAddress& peer : peers_) {
    const std::string& addr = peer.address;
    auto stub = v1::Stage::NewStub(stage_channel(addr, peer.pin));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    v1::InfoResponse info;
    const auto t0 = Clock::now();
    grpc::Status s = stub->Info(&ctx, v1::InfoRequest(), &info);
    // An unreachable peer, or one that is not who its pin says, offers no route.
    auto verified_key = s.ok() ? pinned_key_of(peer, info) : Result<std::string>(std::string());
    const std::string error = !s.ok()            ? s.error_message()
                              : !verified_key.ok() ? verified_key.status().message()
                                                   : std::string();
    if (error != survey_error_[addr]) {
      if (error.empty())
        spdlog::info("peer {} reachable again", addr);
      else
        spdlog::warn("peer {}{} offers no route: {}", addr,
                     peer.pin.empty() ? "" : " (pinned to " + peer.pin + ")", error);
      survey_error_[addr] = error;
    }
    if (!error.empty()) continue;
    PeerSnapshot p;
    p.address = addr;
    p.public_key = *verified_key;
    p.model_id = info.model_id();
    p.layout_id = info.layout_id();
    if (p.model_id != model_id_ && mismatch_logged_[addr] != p.model_id)
      spdlog::warn("peer {} serves model {}, not {}: {}; it is not routed through", addr, p.model_id.substr(0, 16),
                   model_id_.substr(0, 16), net::model_mismatch_reason(options_.layout_id, p.layout_id));
    mismatch_logged_[addr] = p.model_id;
    p.first_layer = info.first_layer();
    p.last_layer = info.last_layer();
    p.n_layer = info.n_layer();
    p.layer_tokens_per_second = info.layer_tokens_per_second();
    p.rtt_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    p.draining = info.draining();
    auto failed = failed_at_.find(addr);
    p.recently_failed = failed != failed_at_.end() && Clock::now() - failed->second < options_.failure_memory;
    snap.push_back(p);
  }
  snapshot_ = std::move(snap);
  surveyed_at_ = Clock::now();
  return Status::Ok();
}

std::vector<PeerSnapshot> PipelineBackend::peers() {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

void PipelineBackend::set_peers(std::vector<net::PeerAddress> peers) {
  auto key = [](const net::PeerAddress& p) { return std::make_pair(p.address, p.pin); };
  auto less = [&](const net::PeerAddress& a, const net::PeerAddress& b) { return key(a) < key(b); };
  auto same = [&](const net::PeerAddress& a, const net::PeerAddress& b) { return key(a) == key(b); };
  std::sort(peers.begin(), peers.end(), less);
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<net::PeerAddress> have = peers_;
  std::sort(have.begin(), have.end(), less);
  if (std::equal(have.begin(), have.end(), peers.begin(), peers.end(), same)) return;
  peers_ = std::move(peers);
  surveyed_at_ = {};
}

Result<std::vector<ChainStage>> PipelineBackend::route() {
  std::lock_guard<std::mutex> lock(mu_);
  if (snapshot_.empty() || Clock::now() - surveyed_at_ > options_.survey_interval) SWARM_RETURN_IF_ERROR(survey_locked());
  auto chain = choose_chain(snapshot_, model_id_, n_layer_, options_.costs);
  if (!chain.ok()) {
    // The swarm may have changed since the last look: look again once.
    SWARM_RETURN_IF_ERROR(survey_locked());
    chain = choose_chain(snapshot_, model_id_, n_layer_, options_.costs);
  }
  if (!chain.ok() && chain.status().code() == Status::Code::kUnavailable) {
    const std::string excluded = excluded_peers(snapshot_, model_id_, options_.layout_id, n_layer_);
    if (!excluded.empty()) return Status::Unavailable(chain.status().message() + excluded);
  }
  return chain;
}

void PipelineBackend::report_failure(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!address.empty()) failed_at_[address] = Clock::now();
  surveyed_at_ = {};  // look at the swarm again before the next route
}

std::string PipelineBackend::probe_for_failure(const std::vector<ChainStage>& chain) {
  // After a timeout in push mode any stage may be the stalled one: the first
  // that cannot answer Info within a second is.
  for (const ChainStage& s : chain) {
    auto stub = v1::Stage::NewStub(stage_channel(s.address, s.public_key));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    v1::InfoResponse info;
    if (!stub->Info(&ctx, v1::InfoRequest(), &info).ok()) return s.address;
  }
  return chain.empty() ? "" : chain.back().address;
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
                                       int max_length, Status refusal, bool* released) {
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
    if (auto next = route(); next.ok()) chain = std::move(next).value();  // a twin may have room
    session = std::make_unique<ChainSession>(chain, options_);
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
  auto chain = route();
  if (!chain.ok()) return chain.status();

  GenerationResult result;
  result.prompt_tokens = prompt_len;
  result.route = describe_chain(*chain);
  const SamplingParams& sp = request.sampling;
  int budget = options_.context_length - prompt_len;
  if (sp.max_tokens >= 0) budget = std::min(budget, sp.max_tokens);

  auto session = std::make_unique<ChainSession>(*chain, options_);
  Status opened = session->open(model_id_, n_layer_, sp, prompt_len + budget);
  if (opened.code() == Status::Code::kResourceExhausted) {  // a node is full: wait for room
    bool released = false;
    opened = open_when_room(session, *chain, sp, prompt_len + budget, opened, &released);
    result.route = describe_chain(*chain);
    if (released || opened.code() == Status::Code::kResourceExhausted) {  // not a node failure
      session->abandon();
      return opened;
    }
  }
  std::vector<int32_t> fed;  // every token the chain has taken, in order: replayed after a failure
  int recoveries = 0;
  // Routes around the failed stage and rebuilds the session's state on a new
  // chain by feeding it everything fed so far plus `input` in one step. The
  // kernels are batch-invariant, so the rebuilt KV caches (and the greedy token
  // this step yields) are exactly those the lost chain had.
  auto recover = [&](Status failure, const std::vector<int32_t>& input) -> Result<int32_t> {
    while (recoverable(failure) && recoveries < options_.max_recoveries) {
      ++recoveries;
      report_failure(session->suspect().empty() ? probe_for_failure(session->chain()) : session->suspect());
      session->abandon();
      auto next = route();
      if (!next.ok()) return next.status().annotate("after " + failure.message());
      result.route = describe_chain(*next) + " (recovered " + std::to_string(recoveries) + "x from: " +
                     failure.message() + ")";
      session = std::make_unique<ChainSession>(*next, options_);
      failure = session->open(model_id_, n_layer_, sp, prompt_len + budget);
      if (!failure.ok()) continue;
      std::vector<int32_t> replay = fed;
      replay.insert(replay.end(), input.begin(), input.end());
      auto token = session->step(replay, 0);
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
  const bool speculate = spec.mode != SpeculationMode::kOff && options_.push &&
                         (spec.mode != SpeculationMode::kDraft || spec.draft);
  // Named now, so that a request that ends at its first token reports too.
  result.speculation.drafter = !speculate                             ? "off"
                               : spec.mode == SpeculationMode::kDraft ? "draft"
                                                                      : "ngram";
  bool finished = false;
  int generated = 0;
  for (; generated < budget; ++generated) {
    Result<int32_t> token = opened.ok() ? session->step(input, static_cast<int>(fed.size())) : Result<int32_t>(opened);
    opened = Status::Ok();
    if (!token.ok()) token = recover(token.status(), input);
    if (!token.ok()) {
      session->abandon();
      return token.status();
    }
    if (generated == 0) t_first = Clock::now();
    ++result.speculation.plain_steps;
    fed.insert(fed.end(), input.begin(), input.end());
    const bool stop_token = std::find(sp.stop_tokens.begin(), sp.stop_tokens.end(), *token) != sp.stop_tokens.end();
    if (stop_token) {
      result.finish_reason = "stop";
      finished = true;
      break;
    }
    ++result.completion_tokens;
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
        session->abandon();
        return token.status();
      }
      fed.push_back(anchor);
      ++stats.plain_steps;
      if (!emit(*token)) break;
      anchor = *token;
    }
  }
  session->close();
  const auto t_end = Clock::now();
  result.prompt_seconds = std::chrono::duration<double>(t_first - t0).count();
  result.generation_seconds = std::chrono::duration<double>(t_end - t_first).count();
  return result;
}

}  // namespace swarm
