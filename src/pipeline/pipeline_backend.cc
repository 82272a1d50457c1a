#include "pipeline/pipeline_backend.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <random>
#include <thread>

#include "net/channel_cache.h"
#include "net/status_convert.h"
#include "net/tls.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace swarm {
namespace {

namespace v1 = ::swarm::v1;
using Clock = std::chrono::steady_clock;
using Stream = grpc::ClientReaderWriter<v1::StageRequest, v1::StageResponse>;

Status from_grpc(const grpc::Status& s, const std::string& where) {
  return net::from_grpc(s).annotate(where);
}

Status from_error(const v1::Error& e, const std::string& where) {
  return from_grpc(grpc::Status(static_cast<grpc::StatusCode>(e.code()), e.message()), where);
}

// `pin`: empty (plaintext) or the hex key or node id the peer must present.
std::shared_ptr<grpc::Channel> channel_for(const std::string& address, const std::string& pin) {
  static net::ChannelCache cache;
  return cache.get(address, pin);
}

// The raw bytes of a hex public key, for Hop.public_key ("" stays "").
std::string key_bytes(const std::string& hex) {
  auto bytes = net::from_hex(hex);
  return bytes.ok() ? *bytes : std::string();
}

std::string random_session_id() {
  std::random_device rd;
  char buf[33];
  for (int i = 0; i < 4; ++i) std::snprintf(buf + 8 * i, 9, "%08x", rd());
  return std::string("g-") + buf;
}

// What one stage's stream said, in arrival order, for the session's own thread.
struct Event {
  size_t stage = 0;
  bool ended = false;            // the stream closed; `status` says why
  grpc::Status status;
  v1::StageResponse response;
};

class EventQueue {
 public:
  void push(Event e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_one();
  }
  bool pop(Event* e, Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_until(lock, deadline, [&] { return !events_.empty(); })) return false;
    *e = std::move(events_.front());
    events_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
};

// One generation's session across a chain: an owner stream to every stage, a
// reader thread per stream feeding one queue.
class ChainSession {
 public:
  ChainSession(std::vector<ChainStage> chain, const PipelineOptions& options)
      : chain_(std::move(chain)), options_(options), id_(random_session_id()) {}

  ~ChainSession() { close(); }

  Status open(const std::string& model_id, int n_layer, const SamplingParams& sp, int max_length) {
    for (size_t i = 0; i < chain_.size(); ++i) {
      Link& link = links_.emplace_back();
      link.ctx = std::make_unique<grpc::ClientContext>();
      link.stub = v1::Stage::NewStub(channel_for(chain_[i].address, chain_[i].public_key));
      link.stream = link.stub->Session(link.ctx.get());
      v1::StageRequest req;
      v1::OpenSession* open = req.mutable_open();
      open->set_session_id(id_);
      open->set_model_id(model_id);
      open->set_first_layer(chain_[i].first_layer);
      open->set_last_layer(chain_[i].last_layer);
      open->set_max_length(max_length);
      open->set_is_first(chain_[i].first_layer == 0);
      open->set_is_last(chain_[i].last_layer == n_layer);
      v1::SamplingConfig* s = open->mutable_sampling();
      s->set_temperature(sp.temperature);
      s->set_top_k(sp.top_k);
      s->set_top_p(sp.top_p);
      s->set_min_p(sp.min_p);
      s->set_repeat_penalty(sp.repeat_penalty);
      s->set_repeat_last_n(sp.repeat_last_n);
      s->set_presence_penalty(sp.presence_penalty);
      s->set_frequency_penalty(sp.frequency_penalty);
      s->set_seed(sp.seed);
      for (const auto& [tok, bias] : sp.logit_bias) {
        v1::LogitBias* b = s->add_logit_bias();
        b->set_token(tok);
        b->set_bias(bias);
      }
      if (!link.stream->Write(req)) return finish_link(i, "opening a session");
      link.reader = std::thread([this, i] { read_loop(i); });
    }
    // Every stage must confirm before the first step goes out.
    for (size_t confirmed = 0; confirmed < chain_.size();) {
      Event e;
      if (!events_.pop(&e, Clock::now() + options_.step_timeout))
        return Status::DeadlineExceeded("no answer to OpenSession within the step timeout");
      if (e.ended) return blame(e.stage, from_grpc(e.status, chain_[e.stage].address));
      if (e.response.has_error()) return from_error(e.response.error(), chain_[e.stage].address + " refused the session");
      if (e.response.has_opened()) ++confirmed;
    }
    return Status::Ok();
  }

  // Runs one step (tokens at `position`) through the chain; returns the sampled token.
  Result<int32_t> step(const std::vector<int32_t>& tokens, int position) {
    const uint64_t step_id = ++step_id_;
    v1::Tensor hidden;
    const size_t n_hops = options_.push ? 1 : chain_.size();
    for (size_t i = 0; i < n_hops; ++i) {
      v1::StageRequest req;
      v1::Step* st = req.mutable_step();
      st->set_session_id(id_);
      st->set_step_id(step_id);
      for (int32_t t : tokens) st->add_tokens(t);
      st->set_position(position);
      st->set_wire_dtype(options_.wire_f16 ? v1::Tensor::F16 : v1::Tensor::F32);
      if (i > 0) *st->mutable_hidden() = std::move(hidden);
      if (options_.push)
        for (size_t h = 1; h < chain_.size(); ++h) {
          v1::Hop* hop = st->add_next_hops();
          hop->set_address(chain_[h].address);
          hop->set_first_layer(chain_[h].first_layer);
          hop->set_last_layer(chain_[h].last_layer);
          if (!chain_[h].public_key.empty()) hop->set_public_key(key_bytes(chain_[h].public_key));
        }
      if (options_.link_delay.count() > 0) std::this_thread::sleep_for(options_.link_delay);
      if (!links_[i].stream->Write(req)) return finish_link(i, "sending a step");
      // Wait for the stage that ends this hop: the last one in push mode.
      const size_t answering = options_.push ? chain_.size() - 1 : i;
      for (;;) {
        Event e;
        if (!events_.pop(&e, Clock::now() + options_.step_timeout))
          return Status::DeadlineExceeded("step " + std::to_string(step_id) + ": no answer from " +
                                          chain_[answering].address + " within the step timeout");
        if (e.ended) return blame(e.stage, from_grpc(e.status, chain_[e.stage].address));
        if (e.response.has_error()) {
          // A stage that cannot reach its next hop says so: the hop is the suspect.
          const bool next_hop = e.response.error().code() == grpc::StatusCode::UNAVAILABLE && options_.push &&
                                e.stage + 1 < chain_.size();
          return blame(next_hop ? e.stage + 1 : e.stage, from_error(e.response.error(), chain_[e.stage].address));
        }
        if (!e.response.has_result() || e.response.result().step_id() != step_id || e.stage != answering) continue;
        v1::StepResult* r = e.response.mutable_result();
        if (answering + 1 < chain_.size()) {
          hidden = std::move(*r->mutable_hidden());
          break;
        }
        if (r->tokens_size() < 1) return Status::Internal(chain_[answering].address + " returned no token");
        return r->tokens(r->tokens_size() - 1);
      }
    }
    return Status::Internal("unreachable");
  }

  // The stage believed to have failed the last step or open ("" if unknown,
  // e.g. after a timeout in push mode, when any stage may have stalled).
  const std::string& suspect() const { return suspect_; }
  const std::vector<ChainStage>& chain() const { return chain_; }

  // Drops the session without waiting for any stage: a dead or stalled peer
  // must not hold the gateway up.
  void abandon() {
    if (closed_) return;
    closed_ = true;
    for (Link& l : links_) l.ctx->TryCancel();
    for (Link& l : links_) {
      if (l.reader.joinable()) l.reader.join();
      if (l.stream) l.stream->Finish();
    }
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    for (Link& l : links_) {
      if (!l.stream) continue;
      v1::StageRequest req;
      req.mutable_close()->set_session_id(id_);
      l.stream->Write(req);
      l.stream->WritesDone();
    }
    for (Link& l : links_) {
      if (l.reader.joinable()) l.reader.join();
      if (l.stream) l.stream->Finish();
    }
  }

 private:
  struct Link {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<v1::Stage::Stub> stub;
    std::unique_ptr<Stream> stream;
    std::thread reader;
  };

  void read_loop(size_t i) {
    v1::StageResponse r;
    while (links_[i].stream->Read(&r)) events_.push({i, false, grpc::Status::OK, std::move(r)});
    events_.push({i, true, grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream closed"), {}});
  }

  Status finish_link(size_t i, const std::string& what) {
    links_[i].ctx->TryCancel();
    return blame(i, Status::Unavailable(chain_[i].address + ": connection lost while " + what));
  }

  Status blame(size_t stage, Status st) {
    suspect_ = chain_[stage].address;
    return st;
  }

  std::vector<ChainStage> chain_;
  const PipelineOptions& options_;
  const std::string id_;
  std::vector<Link> links_;
  EventQueue events_;
  uint64_t step_id_ = 0;
  bool closed_ = false;
  std::string suspect_;
};

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

}  // namespace

std::string describe_chain(const std::vector<ChainStage>& chain) {
  std::string s;
  for (const ChainStage& c : chain)
    s += (s.empty() ? "" : " -> ") + c.address + " [" + std::to_string(c.first_layer) + "," +
         std::to_string(c.last_layer) + ")";
  return s;
}

PipelineBackend::PipelineBackend(std::string model_id, int n_layer, PipelineOptions options)
    : model_id_(std::move(model_id)), n_layer_(n_layer), options_(std::move(options)), peers_(options_.peers) {}

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
    auto stub = v1::Stage::NewStub(channel_for(addr, peer.pin));
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
    auto stub = v1::Stage::NewStub(channel_for(s.address, s.public_key));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    v1::InfoResponse info;
    if (!stub->Info(&ctx, v1::InfoRequest(), &info).ok()) return s.address;
  }
  return chain.empty() ? "" : chain.back().address;
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
  for (int generated = 0; generated < budget; ++generated) {
    Result<int32_t> token = opened.ok() ? session->step(input, static_cast<int>(fed.size())) : Result<int32_t>(opened);
    opened = Status::Ok();
    if (!token.ok()) token = recover(token.status(), input);
    if (!token.ok()) {
      session->abandon();
      return token.status();
    }
    if (generated == 0) t_first = Clock::now();
    fed.insert(fed.end(), input.begin(), input.end());
    const bool stop_token = std::find(sp.stop_tokens.begin(), sp.stop_tokens.end(), *token) != sp.stop_tokens.end();
    if (stop_token) {
      result.finish_reason = "stop";
      break;
    }
    ++result.completion_tokens;
    if (!on_token(*token)) {
      result.finish_reason = "stop";
      break;
    }
    input = {*token};
  }
  session->close();
  const auto t_end = Clock::now();
  result.prompt_seconds = std::chrono::duration<double>(t_first - t0).count();
  result.generation_seconds = std::chrono::duration<double>(t_end - t_first).count();
  return result;
}

}  // namespace swarm
