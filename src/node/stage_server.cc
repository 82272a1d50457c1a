// The stage server's glue: the Stage gRPC service, sessions opened, stepped,
// cancelled and closed, the scheduler thread (its decisions are
// step_scheduler.h's), idle sessions reaped (idle_reaper.h), pushes to next
// stages and Info. A batch is run by batch_runner.cc; the streams are
// server_stream.h's.
#include "node/stage_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/method_handler.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>
#include <optional>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/model_loader.h"
#include "engine/tokenizer.h"
#include "net/caller.h"
#include "net/logprob_codec.h"
#include "net/model_id.h"
#include "net/tensor_codec.h"
#include "net/tls.h"
#include "net/wire_format.h"
#include "node/request_size_limit.h"
#include "node/stage_server_impl.h"
#include "swarm/v1/stage.grpc.pb.h"
#include "trust/commitment.h"

namespace swarm::node {
namespace {

using grpc::ByteBuffer;
using grpc::StatusCode;
using v1::StageRequest;
using v1::StageResponse;

// Session ids longer than this are refused (they are echoed in every message).
constexpr size_t kMaxSessionIdBytes = 256;
// Steps and truncates one session may have waiting; more is a flood, refused.
constexpr int kMaxQueuedPerSession = 256;
// Hops one Step may name (a chain longer than this is not a chain we build).
constexpr int kMaxHopsPerStep = 64;
// Distinct next stages one session may push to over its life: a chain that
// fails over moves to a twin now and then, but a session naming hundreds of
// addresses is using the node to dial strangers.
constexpr size_t kMaxNextHopsPerSession = 4;
// Rows the head runs on for one step (sample_all or drafts): each is a row of
// vocabulary logits, so a verification step is capped where a prefill is not.
constexpr int kMaxSampledRows = 256;
// Bytes waiting to be pushed to one next hop before a step pushed there fails.
constexpr size_t kMaxOutboundBytes = 256u << 20;
// Cancelled step ranges a session remembers (to drop steps that arrive after
// their Cancel).
constexpr size_t kMaxCancelRanges = 16;
// Commitments a step may carry from the stages before (one per stage; a chain
// has at most kMaxHopsPerStep + 1).
constexpr int kMaxCommitmentsPerStep = kMaxHopsPerStep + 1;

std::string range_str(int a, int b) { return std::to_string(a) + ":" + std::to_string(b); }

// A next hop as a session's pushes are keyed: address and pinned key.
std::string hop_key(const v1::Hop& h) {
  return h.address() + "@" + h.public_key();
}

SamplingParams sampling_from_proto(const v1::SamplingConfig& c) {
  SamplingParams p;
  p.temperature = c.temperature();
  p.top_k = c.top_k();
  // proto3 cannot tell "unset" from 0: an unset top_p or repeat_penalty means off.
  p.top_p = c.top_p() <= 0 ? 1.0f : c.top_p();
  p.min_p = c.min_p();
  p.repeat_penalty = c.repeat_penalty() == 0 ? 1.0f : c.repeat_penalty();
  p.repeat_last_n = c.repeat_last_n();
  p.presence_penalty = c.presence_penalty();
  p.frequency_penalty = c.frequency_penalty();
  p.seed = c.seed();
  for (const v1::LogitBias& b : c.logit_bias()) p.logit_bias.emplace_back(b.token(), b.bias());
  p.grammar = c.grammar();
  p.grammar_start = c.grammar_start();
  p.stop_tokens.assign(c.stop_tokens().begin(), c.stop_tokens().end());
  return p;
}

}  // namespace

int session_context(const NodeOptions& o, const ModelConfig& config) {
  constexpr int kDefaultContext = 4096;  // when neither --ctx-size nor the model says one
  return o.context > 0 ? o.context : config.n_ctx_train > 0 ? config.n_ctx_train : kDefaultContext;
}

// The Stage service on gRPC's callback API: streams cost no thread each.
// Session speaks raw bytes so that a message that does not parse gets an Error
// answer on its stream (a generated handler would just end the stream).
class StageServer::Impl::Service final
    : public v1::Stage::WithRawCallbackMethod_Session<
          v1::Stage::WithCallbackMethod_Info<v1::Stage::Service>> {
 public:
  explicit Service(Impl* impl) : impl_(impl) {}

  grpc::ServerBidiReactor<ByteBuffer, ByteBuffer>* Session(
      grpc::CallbackServerContext* ctx) override {
    // Who calls, and whether they may (net/caller.h): a refused caller's
    // stream ends at once with the reason.
    const std::string peer = impl_->acceptor_ ? impl_->acceptor_->peer_of(ctx->peer()) : ctx->peer();
    auto caller = net::caller_identity(*ctx, peer);
    if (!caller.ok())
      return new RefusedStream(grpc::Status(StatusCode::UNAUTHENTICATED, caller.status().message()));
    const grpc::Status admitted = net::admit_session_caller(*caller, impl_->caller_policy_);
    if (!admitted.ok()) {
      spdlog::info("Session stream of {} refused: {}", caller->describe(),
                   admitted.error_message());
      return new RefusedStream(admitted);
    }
    const uint64_t id = impl_->next_stream_id_++;
    return new SessionReactor(impl_, std::make_shared<ServerStream>(
                                         impl_, id,
                                         std::chrono::milliseconds(impl_->opt_.link_delay_ms),
                                         std::chrono::milliseconds(impl_->opt_.stuck_answer_ms),
                                         impl_->timer_, caller->quota_key(), peer));
  }
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx, const v1::InfoRequest*,
                                 v1::InfoResponse* r) override {
    impl_->info(r);
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Impl* impl_;
};

StageServer::Impl::Impl(const NodeOptions& o) : opt_(o) {}
StageServer::Impl::~Impl() { shutdown(); }

Status StageServer::Impl::start() {
  auto source = open_model_source(opt_.model_path);
  if (!source.ok()) return source.status();
  const int n_layer = source->config.n_layer;
  if (opt_.last_layer < 0) opt_.last_layer = n_layer;
  if (opt_.first_layer < 0 || opt_.last_layer > n_layer || opt_.first_layer >= opt_.last_layer)
    return Status::InvalidArgument("--layers " + range_str(opt_.first_layer, opt_.last_layer) +
                                   " is not within the model's 0:" + std::to_string(n_layer));
  auto ids = net::model_ids(*source);
  if (!ids.ok()) return ids.status();
  model_id_ = ids->model_id;
  layout_id_ = ids->layout_id;
  const CheatOptions& cheat = opt_.cheat;
  if (!cheat.mode.empty() || !cheat.claim_model.empty() || cheat.speed_factor != 1) {
    SWARM_RETURN_IF_ERROR(validate(cheat, opt_.last_layer - opt_.first_layer));
    if (!cheat.claim_model.empty()) {
      auto claimed = open_model_source(cheat.claim_model);
      if (!claimed.ok()) return claimed.status().annotate("--cheat-claim-model");
      auto claimed_ids = net::model_ids(*claimed);
      if (!claimed_ids.ok()) return claimed_ids.status().annotate("--cheat-claim-model");
      model_id_ = claimed_ids->model_id;
      layout_id_ = claimed_ids->layout_id;
    }
    cheater_ = std::make_unique<Cheater>(cheat);
    spdlog::warn("this node CHEATS on purpose (--cheat {}, rate {}, speed x{}{}{}): for tests only",
                 cheat.mode.empty() ? "none" : cheat.mode, cheat.rate, cheat.speed_factor,
                 cheat.unaudited_only ? ", only when not audited" : "",
                 cheat.claim_model.empty() ? "" : ", claims the model id of " + cheat.claim_model);
  }
  context_ = session_context(opt_, source->config);
  if (opt_.max_sessions < 1)
    return Status::InvalidArgument("--max-sessions " + std::to_string(opt_.max_sessions) +
                                   " is not >= 1");
  LoadOptions lo;
  lo.first_layer = opt_.first_layer;
  lo.last_layer = opt_.last_layer;
  lo.no_mmap = opt_.no_mmap;
  lo.device = opt_.device;
  lo.context = context_;
  lo.progress = opt_.progress;
  auto model = Model::Load(opt_.model_path, lo);
  if (!model.ok()) return model.status();
  model_ = std::move(model).value();
  pool_ = std::make_unique<ThreadPool>(opt_.threads);
  if (opt_.max_batch_tokens < 1) opt_.max_batch_tokens = 1;
  if (!(opt_.slowdown >= 1))
    return Status::InvalidArgument("slowdown " + std::to_string(opt_.slowdown) + " is not >= 1");

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!opt_.identity_path.empty()) {
    auto identity = net::Identity::Load(opt_.identity_path);
    if (!identity.ok())
      return identity.status().annotate(
          "--identity" + std::string(identity.status().code() == Status::Code::kNotFound
                                         ? " (create one with swarm keygen -o FILE)"
                                         : ""));
    auto tls = net::identity_server_credentials(*identity);
    if (!tls.ok()) return tls.status();
    credentials = *tls;
    node_id_ = identity->node_id();
    public_key_.assign(identity->public_key().begin(), identity->public_key().end());
    // Its pushes to the next stage present its own identity.
    auto client = net::client_certificate_of(*identity);
    if (!client.ok()) return client.status();
    channels_.set_client_certificate(*client);
    caller_policy_.tls = true;
    caller_policy_.allow_anonymous = opt_.allow_anonymous;
    identity_.emplace(std::move(identity).value());
  }
  if (!opt_.allow.empty()) {
    if (node_id_.empty())
      return Status::InvalidArgument("--allow needs --identity: only TLS callers have identities");
    auto allow = net::AllowList::Parse(opt_.allow);
    if (!allow.ok()) return allow.status().annotate("--allow");
    caller_policy_.allow = std::move(allow).value();
    spdlog::info("serving sessions only to the {} identities --allow lists",
                 caller_policy_.allow->size());
  }
  // The total is --max-sessions, which open() checks itself.
  CallerQuotaLimits limits = opt_.quota;
  limits.sessions_total = std::numeric_limits<int>::max();
  quota_ = std::make_unique<CallerQuota>(limits);

  service_ = std::make_unique<Service>(this);
  grpc::ServerBuilder builder;
  net::configure_server(builder);
  // A longer request is refused by gRPC before it is read (request_size_limit.h).
  const ModelConfig& mc = model_->config();
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_request_bytes(
      {.context = context_, .d_model = mc.n_embd, .n_vocab = mc.n_vocab, .n_layer = mc.n_layer,
       .max_hops = kMaxHopsPerStep, .max_sampled_rows = kMaxSampledRows,
       .max_session_id_bytes = static_cast<int>(kMaxSessionIdBytes)})));
  int port = 0;
  if (node_id_.empty()) {
    // Plaintext: the node accepts connections itself, to close a flood of new
    // ones before gRPC spends anything on them (net/connection_acceptor.h).
    auto acceptor = net::ConnectionAcceptor::Listen(opt_.listen, opt_.connections, clock_);
    if (!acceptor.ok()) return acceptor.status();
    acceptor_ = std::move(acceptor).value();
    port = acceptor_->port();
  } else {
    builder.AddListeningPort(opt_.listen, credentials, &port);
  }
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0)
    return Status::IOError("cannot listen on " + opt_.listen +
                           " (is another process listening there?)");
  if (acceptor_) acceptor_->start(server_.get());
  const size_t colon = opt_.listen.rfind(':');
  address_ = opt_.listen.substr(0, colon) + ":" + std::to_string(port);
  scheduler_ = std::thread([this] { scheduler_loop(); });
  reaper_ = std::make_unique<IdleReaper>(
      clock_,
      std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(opt_.idle_timeout_s)),
      [this](Clock::time_point now) { reap_idle(now); });
  spdlog::info("serving {} layers {} of {} (model id {}) on {}, {}", model_->config().name,
               range_str(opt_.first_layer, opt_.last_layer), n_layer, model_id_.substr(0, 16),
               address_, node_id_.empty() ? "plaintext" : "TLS as node " + node_id_);
  if (opt_.slowdown > 1)
    spdlog::info("slowdown {}: every batch's compute is made to take {} times as long",
                 opt_.slowdown, opt_.slowdown);
  return Status::Ok();
}

void StageServer::Impl::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    queue_cv_.notify_all();
  }
  if (scheduler_.joinable()) scheduler_.join();
  if (reaper_) reaper_->stop();
  std::vector<std::shared_ptr<Session>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_) left.push_back(s);
  }
  std::vector<std::shared_ptr<Outbound>> pushes;
  for (auto& s : left) {
    std::lock_guard<std::mutex> lock(s->mu);
    for (auto& [addr, out] : s->outbound) pushes.push_back(out);
  }
  for (auto& out : pushes) out->cancel();
  for (auto& s : left) close_session(s, "node shutting down");
  if (acceptor_) acceptor_->stop();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  // Reactors call into this object until gRPC is done with them.
  std::unique_lock<std::mutex> lock(streams_mu_);
  streams_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return live_streams_ == 0; });
}

std::shared_ptr<Session> StageServer::Impl::find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

void StageServer::Impl::stream_started() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  ++live_streams_;
}

void StageServer::Impl::stream_ended() {
  std::lock_guard<std::mutex> lock(streams_mu_);
  --live_streams_;
  streams_cv_.notify_all();
}

void StageServer::Impl::handle(StageRequest& req, uint64_t stream_id,
                               const std::shared_ptr<ServerStream>& writer) {
  switch (req.kind_case()) {
    case StageRequest::kOpen:
      open(req.open(), stream_id, writer);
      return;
    case StageRequest::kStep:
      step(*req.mutable_step(), writer);
      return;
    case StageRequest::kCancel:
      cancel(req.cancel(), writer);
      return;
    case StageRequest::kTruncate:
    case StageRequest::kClose: {
      const bool is_close = req.kind_case() == StageRequest::kClose;
      const std::string& id = is_close ? req.close().session_id() : req.truncate().session_id();
      auto s = find(id);
      if (!s) {
        writer->send(error_response(id, 0, StatusCode::NOT_FOUND, "unknown session '" + id + "'"));
        return;
      }
      if (s->owner_stream != stream_id) {
        writer->send(error_response(id, 0, StatusCode::PERMISSION_DENIED,
                                    std::string(is_close ? "Close" : "Truncate") +
                                        ": only the stream that opened session '" + id +
                                        "' may send this"));
        return;
      }
      s->touch(clock_);
      if (is_close) {
        close_session(s, "closed by its owner");
      } else {
        WorkItem w;
        w.session = s;
        w.truncate = true;
        w.truncate_length = req.truncate().length();
        w.arrived = clock_.now();
        enqueue(std::move(w));
      }
      return;
    }
    case StageRequest::KIND_NOT_SET:
      writer->send(
          error_response("", 0, StatusCode::INVALID_ARGUMENT, "StageRequest: no message kind set"));
      return;
  }
}

Result<std::shared_ptr<const GrammarVocab>> StageServer::Impl::grammar_vocab() {
  std::lock_guard<std::mutex> lock(vocab_mu_);
  if (vocab_) return vocab_;
  auto tok = Tokenizer::Load(opt_.model_path);
  if (!tok.ok()) return tok.status().annotate("reading the model's vocabulary");
  if ((*tok)->vocab_size() < model_->config().n_vocab)
    return Status::Unsupported("the model's tokenizer has fewer tokens than its head");
  vocab_ = GrammarVocab::from_tokenizer(**tok);
  return vocab_;
}

void StageServer::Impl::open(const v1::OpenSession& o, uint64_t stream_id,
                             const std::shared_ptr<ServerStream>& writer) {
  const std::string& id = o.session_id();
  auto refuse = [&](StatusCode code, const std::string& msg) {
    spdlog::info("session '{}' refused: {}", id.substr(0, 64), msg);
    writer->send(error_response(id, 0, code, msg));
  };
  const ModelConfig& c = model_->config();
  if (id.empty() || id.size() > kMaxSessionIdBytes)
    return refuse(StatusCode::INVALID_ARGUMENT, "OpenSession.session_id: must be 1 to " +
                                                    std::to_string(kMaxSessionIdBytes) +
                                                    " bytes, got " + std::to_string(id.size()));
  if (o.model_id() != model_id_)
    return refuse(
        StatusCode::FAILED_PRECONDITION,
        "OpenSession.model_id: '" + o.model_id() + "', but this node serves '" + model_id_ + "'" +
            (o.layout_id().empty() ? "" : ": " + net::model_mismatch_reason(o.layout_id(), layout_id_)));
  if (o.first_layer() < opt_.first_layer || o.last_layer() > opt_.last_layer ||
      o.first_layer() >= o.last_layer())
    return refuse(
        StatusCode::INVALID_ARGUMENT,
        "OpenSession.first_layer:last_layer: " + range_str(o.first_layer(), o.last_layer()) +
            " is not a non-empty part of the served range " +
            range_str(opt_.first_layer, opt_.last_layer));
  if (o.is_first() && (o.first_layer() != 0 || !model_->has_embed()))
    return refuse(StatusCode::FAILED_PRECONDITION,
                  "OpenSession.is_first: needs first_layer 0, got " +
                      std::to_string(o.first_layer()) + " (this node serves " +
                      range_str(opt_.first_layer, opt_.last_layer) + ")");
  if (o.is_last() && (o.last_layer() != c.n_layer || !model_->has_head()))
    return refuse(StatusCode::FAILED_PRECONDITION,
                  "OpenSession.is_last: needs last_layer " + std::to_string(c.n_layer) + ", got " +
                      std::to_string(o.last_layer()) + " (this node serves " +
                      range_str(opt_.first_layer, opt_.last_layer) + ")");
  if (o.max_length() <= 0 || o.max_length() > context_)
    return refuse(StatusCode::INVALID_ARGUMENT,
                  "OpenSession.max_length: must be 1 to " + std::to_string(context_) +
                      " (this node's context), got " + std::to_string(o.max_length()));
  auto lease = quota_->open_session(writer->caller());
  if (!lease.ok()) return refuse(StatusCode::RESOURCE_EXHAUSTED, lease.status().message());
  auto s = std::make_shared<Session>();
  s->quota_lease = std::move(lease).value();
  s->caller = std::hash<std::string>{}(writer->connection());
  if (o.is_last()) {
    SamplingParams p = sampling_from_proto(o.sampling());
    const Status st = p.validate(c.n_vocab);
    if (!st.ok())
      return refuse(StatusCode::INVALID_ARGUMENT, "OpenSession.sampling: " + st.message());
    std::shared_ptr<const GrammarVocab> vocab;
    if (!p.grammar.empty()) {
      auto v = grammar_vocab();
      if (!v.ok())
        return refuse(StatusCode::FAILED_PRECONDITION,
                      "OpenSession.sampling.grammar: " + v.status().message());
      vocab = *v;
    }
    s->sampler = std::make_unique<Sampler>(std::move(p), c.n_vocab, std::move(vocab));
    if (const Status& g = s->sampler->grammar_status(); !g.ok())
      return refuse(StatusCode::INVALID_ARGUMENT, "OpenSession.sampling.grammar: " + g.message());
    if (o.top_logprobs() < 0 || o.top_logprobs() > kMaxTopLogprobs)
      return refuse(StatusCode::INVALID_ARGUMENT,
                    "OpenSession.top_logprobs: must be 0 to " + std::to_string(kMaxTopLogprobs) +
                        ", got " + std::to_string(o.top_logprobs()));
    if (o.logprobs()) s->logprobs = o.top_logprobs();
  }
  s->id = id;
  s->first = o.first_layer();
  s->last = o.last_layer();
  s->is_first = o.is_first();
  s->is_last = o.is_last();
  s->max_length = o.max_length();
  s->kv_bytes = KvCache::bytes_for(s->last - s->first, model_->kv_dim(), s->max_length);
  s->owner_stream = stream_id;
  s->owner = writer;
  s->touch(clock_);
  // Answers are sent outside mu_: a stream's send may end the stream, which
  // closes its sessions under mu_.
  std::optional<StageResponse> refusal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) {
      refusal = error_response(id, 0, StatusCode::UNAVAILABLE, "node is draining: no new sessions");
    } else if (sessions_.size() >= static_cast<size_t>(opt_.max_sessions)) {
      refusal = error_response(id, 0, StatusCode::RESOURCE_EXHAUSTED,
                               "sessions: this node holds its limit of " +
                                   std::to_string(opt_.max_sessions) + " (--max-sessions)");
    } else if (sessions_.count(id)) {
      refusal = error_response(id, 0, StatusCode::ALREADY_EXISTS,
                               "OpenSession.session_id: '" + id + "' is already open on this node");
    } else if (s->kv_bytes > opt_.kv_memory_bytes - kv_used_) {
      refusal = error_response(id, 0, StatusCode::RESOURCE_EXHAUSTED,
                               "KV memory: need " + std::to_string(s->kv_bytes) + " bytes, " +
                                   std::to_string(opt_.kv_memory_bytes - kv_used_) + " free of " +
                                   std::to_string(opt_.kv_memory_bytes));
    } else {
      s->cache = model_->new_cache(s->first, s->last, s->max_length);
      kv_used_ += s->kv_bytes;
      sessions_[id] = s;
    }
  }
  if (refusal) {
    spdlog::info("session '{}' refused: {}", id.substr(0, 64), refusal->error().message());
    writer->send(*refusal);
    return;
  }
  spdlog::info("session '{}' opened by {}: layers {}{}{}, max_length {}, {} KV bytes",
               id.substr(0, 64), writer->caller(), range_str(s->first, s->last),
               s->is_first ? " +embed" : "",
               s->is_last ? " +head" : "", s->max_length, s->kv_bytes);
  StageResponse r;
  r.mutable_opened()->set_session_id(id);
  writer->send(std::move(r));
}

void StageServer::Impl::step(v1::Step& st, const std::shared_ptr<ServerStream>& writer) {
  auto s = find(st.session_id());
  if (!s) {
    writer->send(error_response(st.session_id(), st.step_id(), StatusCode::NOT_FOUND,
                                "Step: unknown session '" + st.session_id() + "' (open it first)"));
    return;
  }
  s->touch(clock_);
  auto fail = [&](StatusCode code, const std::string& msg) {
    spdlog::warn("session '{}' step {}: {}", s->id.substr(0, 64), st.step_id(), msg);
    s->owner->send(error_response(s->id, st.step_id(), code, msg));
  };
  if (s->queued.load() >= kMaxQueuedPerSession)
    return fail(StatusCode::RESOURCE_EXHAUSTED,
                "Step: " + std::to_string(kMaxQueuedPerSession) +
                    " messages of this session already wait to run");
  const ModelConfig& c = model_->config();
  const int64_t n = st.tokens_size();
  if (n == 0) return fail(StatusCode::INVALID_ARGUMENT, "Step.tokens: empty");
  for (int64_t i = 0; i < n; ++i)
    if (st.tokens(i) < 0 || st.tokens(i) >= c.n_vocab)
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.tokens[" + std::to_string(i) + "]: " + std::to_string(st.tokens(i)) +
                      " is outside the vocabulary [0, " + std::to_string(c.n_vocab) + ")");
  if (st.position() < 0 || st.position() > s->max_length - n)
    return fail(StatusCode::OUT_OF_RANGE,
                "Step.position: " + std::to_string(st.position()) + " + " + std::to_string(n) +
                    " tokens exceeds the session's max_length " + std::to_string(s->max_length));
  if (net::tensor_element_size(st.wire_dtype()) == 0)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.wire_dtype: unknown dtype " + std::to_string(st.wire_dtype()));
  if (st.n_drafts() < 0 || st.n_drafts() > n)
    return fail(StatusCode::INVALID_ARGUMENT, "Step.n_drafts: " + std::to_string(st.n_drafts()) +
                                                  " for a step of " + std::to_string(n) +
                                                  " tokens");
  if (st.draft_probs_size() != 0 && st.draft_probs_size() != st.n_drafts())
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.draft_probs: " + std::to_string(st.draft_probs_size()) + " entries for " +
                    std::to_string(st.n_drafts()) + " drafts (give one per draft, or none)");
  for (int i = 0; i < st.draft_probs_size(); ++i) {
    const v1::DraftProbs& dp = st.draft_probs(i);
    const Status qs = validate_sparse_probs(
        {{dp.ids().begin(), dp.ids().end()}, {dp.probs().begin(), dp.probs().end()}}, c.n_vocab);
    if (!qs.ok())
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.draft_probs[" + std::to_string(i) + "]: " + qs.message());
  }
  if (st.continues_previous() && st.n_drafts() != n)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.continues_previous: every token must be a draft (n_drafts " +
                    std::to_string(st.n_drafts()) + ", tokens " + std::to_string(n) + ")");
  if (st.continues_previous() && st.rewind())
    return fail(StatusCode::INVALID_ARGUMENT, "Step.continues_previous: cannot rewind");
  if (s->is_last && st.next_hops_size() > 0)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.next_hops: given to the last stage (it holds the head)");
  if (st.next_hops_size() > kMaxHopsPerStep)
    return fail(StatusCode::INVALID_ARGUMENT, "Step.next_hops: " +
                                                  std::to_string(st.next_hops_size()) +
                                                  " hops, at most " +
                                                  std::to_string(kMaxHopsPerStep));
  if ((st.sample_all() || st.n_drafts() > 0) && n > kMaxSampledRows)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.tokens: " + std::to_string(n) + " tokens in a step sampled at every " +
                    "position (sample_all or drafts); at most " + std::to_string(kMaxSampledRows));
  if (st.score_tokens() && n > kMaxSampledRows)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.tokens: " + std::to_string(n) + " tokens in a step scored at every " +
                    "position (score_tokens); at most " + std::to_string(kMaxSampledRows));
  if (st.sketches() && st.row_hashes() && n > kMaxSampledRows)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.tokens: " + std::to_string(n) + " tokens in an audit run with every row " +
                    "sketched (row_hashes and sketches); at most " + std::to_string(kMaxSampledRows));
  if (st.commitments_size() > kMaxCommitmentsPerStep)
    return fail(StatusCode::INVALID_ARGUMENT,
                "Step.commitments: " + std::to_string(st.commitments_size()) + ", at most " +
                    std::to_string(kMaxCommitmentsPerStep));
  for (const v1::Hop& h : st.next_hops()) {
    if (h.address().empty() || h.address().size() > 1024)
      return fail(StatusCode::INVALID_ARGUMENT, "Step.next_hops: a hop without a valid address");
    // A node with an identity dials only nodes whose identity the chain pins.
    if (!public_key_.empty() && h.public_key().empty())
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.next_hops.public_key: missing for hop " + h.address().substr(0, 256) +
                      " (a node with an identity pushes only to pinned nodes)");
    if (!h.public_key().empty() && h.public_key().size() != net::kPublicKeyBytes)
      return fail(StatusCode::INVALID_ARGUMENT,
                  "Step.next_hops: public_key of " + std::to_string(h.public_key().size()) +
                      " bytes (an Ed25519 key has " + std::to_string(net::kPublicKeyBytes) + ")");
  }
  if (st.next_hops_size() > 0) {
    const v1::Hop& h = st.next_hops(0);
    std::lock_guard<std::mutex> lock(s->mu);
    if (!s->outbound.count(hop_key(h)) && s->outbound.size() >= kMaxNextHopsPerSession)
      return fail(StatusCode::RESOURCE_EXHAUSTED,
                  "Step.next_hops[0]: " + h.address() + " would be this session's " +
                      std::to_string(kMaxNextHopsPerSession + 1) +
                      "th next stage; at most " + std::to_string(kMaxNextHopsPerSession));
  }
  WorkItem w;
  auto lease = quota_->start_step(writer->caller());
  if (!lease.ok()) return fail(StatusCode::RESOURCE_EXHAUSTED, "Step: " + lease.status().message());
  w.quota_lease = std::move(lease).value();
  // A plain run (a prefill or a replay) may run a part at a time; runs the
  // last stage samples at every position may not.
  w.chunkable = !st.sample_all() && st.n_drafts() == 0 && !st.continues_previous() &&
                !(s->is_last && st.score_tokens());
  if (s->is_first) {
    if (st.has_hidden())
      return fail(StatusCode::INVALID_ARGUMENT, "Step.hidden: must be absent at the first stage");
  } else {
    if (!st.has_hidden())
      return fail(
          StatusCode::INVALID_ARGUMENT,
          "Step.hidden: missing (this stage starts at layer " + std::to_string(s->first) + ")");
    const Status ds = net::decode_tensor(st.hidden(), n, c.n_embd, &w.hidden, "Step.hidden");
    if (!ds.ok()) return fail(StatusCode::INVALID_ARGUMENT, ds.message());
    // Decoding checked the size: n rows of equal width, as they came.
    w.input_rows = trust::row_hashes(st.hidden().data().data(), n, st.hidden().data().size() / n);
    st.clear_hidden();
  }
  if (s->is_first) w.input_rows = trust::token_row_hashes(st.tokens().data(), n);
  // Held against the stream the step came on until it ran: its input, and
  // the output it will make (the hidden states a stage before the last sends
  // on), so a caller cannot queue cheap steps whose answers it never reads.
  const size_t output_bytes =
      s->is_last ? static_cast<size_t>(n) * sizeof(int32_t)
                 : static_cast<size_t>(n) * static_cast<size_t>(c.n_embd) *
                       net::tensor_element_size(st.wire_dtype());
  w.ticket = std::make_unique<InputTicket>(
      writer, w.hidden.size() * sizeof(float) + static_cast<size_t>(n) * sizeof(int32_t) +
                  output_bytes);
  w.session = std::move(s);
  w.step = std::move(st);
  w.arrived = clock_.now();
  enqueue(std::move(w));
}

void StageServer::Impl::enqueue(WorkItem item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (item.truncate || !is_cancelled(*item.session, item.step.step_id())) {
      ++item.session->queued;
      queue_.push_back(std::move(item));
      queue_cv_.notify_one();
      return;
    }
    ++steps_cancelled_;
  }
  // Its Cancel came first (from the gateway directly, or a race with the
  // previous stage's push): it is dropped on arrival.
  item.session->owner->send(cancelled_response(*item.session, item.step.step_id()));
}

void StageServer::Impl::cancel(const v1::Cancel& c, const std::shared_ptr<ServerStream>& writer) {
  auto s = find(c.session_id());
  if (!s) {
    writer->send(error_response(c.session_id(), c.from_step_id(), StatusCode::NOT_FOUND,
                                "Cancel: unknown session '" + c.session_id() + "'"));
    return;
  }
  s->touch(clock_);
  if (c.to_step_id() < c.from_step_id()) {
    s->owner->send(error_response(s->id, c.from_step_id(), StatusCode::INVALID_ARGUMENT,
                                  "Cancel.to_step_id: " + std::to_string(c.to_step_id()) +
                                      " is below from_step_id " +
                                      std::to_string(c.from_step_id())));
    return;
  }
  auto covers = [&](uint64_t id) { return c.from_step_id() <= id && id <= c.to_step_id(); };
  std::vector<uint64_t> dropped;
  int64_t wasted_us = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s->cancelled.emplace_back(c.from_step_id(), c.to_step_id());
    if (s->cancelled.size() > kMaxCancelRanges) s->cancelled.pop_front();
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->session != s || it->truncate || !covers(it->step.step_id())) {
        ++it;
        continue;
      }
      dropped.push_back(it->step.step_id());
      --s->queued;
      it = queue_.erase(it);
    }
    // Steps that already ran here were wasted work; each is counted once.
    std::erase_if(s->recent_runs, [&](const auto& run) {
      if (!covers(run.first)) return false;
      wasted_us += run.second;
      return true;
    });
    steps_cancelled_ += static_cast<int64_t>(dropped.size());
    cancelled_compute_us_ += wasted_us;
  }
  queue_cv_.notify_all();  // a slowed batch this Cancel covers stops waiting
  for (uint64_t id : dropped) s->owner->send(cancelled_response(*s, id));
  // The next stages hear it after the steps already pushed to them, on the same
  // streams, so those are still queued there (or running) when it arrives.
  std::vector<std::shared_ptr<Outbound>> hops;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (!s->closed)
      for (auto& [addr, out] : s->outbound) hops.push_back(out);
  }
  const size_t forwarded = hops.size();
  for (const auto& out : hops) {
    StageRequest fwd;
    *fwd.mutable_cancel() = c;
    out->send(std::move(fwd));
  }
  spdlog::debug("session '{}': cancel steps {}..{}: {} dropped here, {} us wasted, {} hops told",
                s->id.substr(0, 64), c.from_step_id(), c.to_step_id(), dropped.size(), wasted_us,
                forwarded);
}

void StageServer::Impl::close_session(const std::shared_ptr<Session>& s, const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(s->id);
    if (it == sessions_.end() || it->second != s) return;
    sessions_.erase(it);
    scheduler_state_.session_closed(s->last_active_at(), s->caller);
    kv_used_ -= s->kv_bytes;
    s->quota_lease.release();
    drained_cv_.notify_all();
  }
  std::map<std::string, std::shared_ptr<Outbound>> outbound;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->closed = true;
    outbound.swap(s->outbound);
  }
  for (auto& [addr, out] : outbound) out->close();
  spdlog::info("session '{}' closed: {}", s->id.substr(0, 64), why);
}

void StageServer::Impl::answers_flowing() {
  // Without mu_: a stream may call this from inside a send made under it. A
  // wake-up lost between the scheduler's look at the queue and its wait
  // costs at most StepScheduler::kStalledRetry.
  queue_cv_.notify_all();
}

void StageServer::Impl::close_sessions_of_stream(uint64_t stream_id) {
  std::vector<std::shared_ptr<Session>> owned;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, s] : sessions_)
      if (s->owner_stream == stream_id) owned.push_back(s);
  }
  for (auto& s : owned) close_session(s, "its owner's stream ended");
}

void StageServer::Impl::reap_idle(Clock::time_point now) {
  const auto limit = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(opt_.idle_timeout_s));
  std::vector<std::shared_ptr<Session>> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    for (auto& [id, s] : sessions_)
      if (is_idle(s->last_active_at(), now, limit)) idle.push_back(s);
  }
  for (auto& s : idle) {
    s->owner->send(error_response(
        s->id, 0, StatusCode::DEADLINE_EXCEEDED,
        "session idle for more than " + std::to_string(opt_.idle_timeout_s) + " s: closed"));
    close_session(s, "idle");
  }
}

void StageServer::Impl::scheduler_loop() {
  bool waiting_on_shares = false;  // the last plan ran nothing: work waits for its share
  bool waiting_on_answers = false;  // ... or for stalled sessions' callers to read
  for (;;) {
    std::vector<WorkItem> batch;
    std::vector<std::pair<std::shared_ptr<Session>, std::string>> truncate_errors;
    bool contended = false;  // the batch ran beside or ahead of another session's queued work
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (waiting_on_shares)  // a share decays with time: look again soon
        clock_.wait_until(lock, queue_cv_, clock_.now() + StepScheduler::kShareRetry);
      else if (waiting_on_answers)  // woken by an answer written, or new work
        clock_.wait_until(lock, queue_cv_, clock_.now() + StepScheduler::kStalledRetry);
      else
        clock_.wait_until(lock, queue_cv_, Clock::kNever,
                          [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      const Clock::time_point now = clock_.now();
      std::vector<StepScheduler::SessionSeen> open;
      open.reserve(sessions_.size());
      for (const auto& [id, s] : sessions_) open.push_back({s->last_active_at(), s->caller});
      // The order is batch_plan.h's rule; this applies it to the queue.
      std::vector<QueuedWork> work;
      work.reserve(queue_.size());
      for (const WorkItem& w : queue_) {
        const Session& s = *w.session;
        work.push_back({.session = reinterpret_cast<uintptr_t>(&s),
                        .caller = s.caller,
                        .session_closed = s.closed.load(),
                        .truncate = w.truncate,
                        .continuation = !w.truncate && w.step.continues_previous(),
                        .tokens = w.truncate ? 0 : w.tokens() - w.done,
                        .chunkable = w.chunkable,
                        .first_layer = s.first,
                        .last_layer = s.last,
                        .background = !w.truncate && w.step.row_hashes(),
                        .stalled = !s.owner->taking_answers()});
      }
      // One client's sessions in turn (a gateway's requests one after
      // another) do not share the node with each other's ghosts.
      const std::optional<uintptr_t> sole = StepScheduler::sole_caller(work);
      const int active = scheduler_state_.active_sessions(open, now, sole ? &*sole : nullptr);
      const StepScheduler::Decision decision =
          scheduler_state_.next_batch(std::move(work), opt_.max_batch_tokens, active, now,
                                      scheduler_state_.bulk_chunk_tokens());
      const BatchPlan& plan = decision.plan;
      waiting_on_shares = decision.waiting_on_shares;
      waiting_on_answers = decision.waiting_on_answers;
      contended = decision.contended;
      std::vector<bool> leaves(queue_.size(), false);
      auto leave = [&](size_t i) {
        --queue_[i].session->queued;
        leaves[i] = true;
      };
      for (size_t i : plan.dropped) leave(i);
      for (size_t i : plan.truncates) {
        Session& s = *queue_[i].session;
        const Status st = rewind_session(s, queue_[i].truncate_length);
        if (!st.ok()) truncate_errors.emplace_back(queue_[i].session, st.message());
        leave(i);
      }
      for (size_t k = 0; k < plan.batch.size(); ++k) {
        const size_t i = plan.batch[k];
        leave(i);
        queue_[i].take = plan.take[k];
        batch.push_back(std::move(queue_[i]));
      }
      std::deque<WorkItem> stay;
      for (size_t i = 0; i < queue_.size(); ++i)
        if (!leaves[i]) stay.push_back(std::move(queue_[i]));
      queue_.swap(stay);
    }
    for (const auto& [s, message] : truncate_errors)
      s->owner->send(error_response(s->id, 0, StatusCode::OUT_OF_RANGE, "Truncate.length: " + message));
    if (batch.empty()) continue;
    std::vector<std::pair<uintptr_t, int>> charged;
    for (const WorkItem& w : batch)
      charged.emplace_back(w.session->caller, w.take);
    const auto started = clock_.now();
    // Chunked steps with more to run go back to the front of the queue,
    // ahead of their sessions' later items.
    std::vector<WorkItem> more = run_batch_safely(batch);
    const auto ended = clock_.now();
    const double took = std::chrono::duration<double>(ended - started).count();
    {
      std::lock_guard<std::mutex> lock(mu_);
      scheduler_state_.batch_ran(charged, took, ended, contended);
    }
    std::vector<WorkItem> cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = more.rbegin(); it != more.rend(); ++it) {
        if (is_cancelled(*it->session, it->step.step_id())) {
          ++steps_cancelled_;
          cancelled.push_back(std::move(*it));
          continue;
        }
        ++it->session->queued;
        queue_.push_front(std::move(*it));
      }
    }
    for (WorkItem& w : cancelled) w.session->owner->send(cancelled_response(*w.session, w.step.step_id()));
  }
}

void StageServer::Impl::push(const std::shared_ptr<Session>& s, const v1::Hop& hop,
                             StageRequest req) {
  // Sent outside the session's lock: a send that fails at once answers the
  // owner, which may end its stream and close this session.
  std::shared_ptr<Outbound> target;
  {
  std::lock_guard<std::mutex> lock(s->mu);
  if (s->closed) return;
  // Validated in step(): empty or exactly one key's bytes.
  net::PublicKey key{};
  std::copy(hop.public_key().begin(), hop.public_key().end(), key.begin());
  const std::string pin =
      hop.public_key().empty() ? std::string() : net::to_hex(key.data(), key.size());
  auto& out = s->outbound[hop_key(hop)];
  if (!out) {
    std::weak_ptr<Session> weak = s;
    const std::string addr = hop.address();
    const std::string hop_desc =
        addr + " (layers " + range_str(hop.first_layer(), hop.last_layer()) +
        (pin.empty() ? ")" : ", pinned to node " + net::node_id_of(key) + ")");
    out = Outbound::Create(
        channels_.get(addr, pin), std::chrono::milliseconds(opt_.link_delay_ms), timer_,
        kMaxOutboundBytes,
        [weak, hop_desc](const StageRequest& r, const std::string& why) {
          // A forwarded Cancel that cannot be delivered needs no answer: the
          // steps it was about failed to reach the hop too, and said so.
          if (r.kind_case() != StageRequest::kStep) return;
          if (auto s = weak.lock())
            s->owner->send(error_response(s->id, r.step().step_id(), StatusCode::UNAVAILABLE,
                                          "next hop " + hop_desc + ": " + why));
        },
        [weak, hop_desc](const StageResponse& resp) {
          // The next stage answers its sessions' owner, not us; what comes back
          // here is an error about a message we pushed. Tell our owner.
          auto s = weak.lock();
          if (!s || resp.kind_case() != StageResponse::kError) return;
          StageResponse copy = resp;
          copy.mutable_error()->set_message("next hop " + hop_desc + ": " + resp.error().message());
          s->owner->send(std::move(copy));
        });
  }
  target = out;
  }
  target->send(std::move(req));
}

void StageServer::Impl::info(v1::InfoResponse* r) {
  const ModelConfig& c = model_->config();
  r->set_version(net::kProtocolVersion);
  r->set_model_id(model_id_);
  r->set_layout_id(layout_id_);
  r->set_model_name(c.name);
  r->set_n_layer(c.n_layer);
  r->set_first_layer(opt_.first_layer);
  r->set_last_layer(opt_.last_layer);
  r->set_d_model(c.n_embd);
  std::lock_guard<std::mutex> lock(mu_);
  r->set_active_sessions(static_cast<int32_t>(sessions_.size()));
  r->set_kv_bytes_total(static_cast<int64_t>(opt_.kv_memory_bytes));
  r->set_kv_bytes_free(static_cast<int64_t>(opt_.kv_memory_bytes - kv_used_));
  r->set_layer_tokens_per_second(layer_tokens_per_s_ * (cheater_ ? cheater_->speed_factor() : 1));
  r->set_draining(draining_);
  r->set_queued_steps(static_cast<int32_t>(queue_.size()));
  r->set_public_key(public_key_);
  r->set_node_id(node_id_);
  r->set_price_per_1k(opt_.price_per_1k);
  r->set_inexact(opt_.emulate_inexact > 0 || !model_->backend().exact());
  r->set_slowdown(opt_.slowdown);
  r->set_steps_cancelled(steps_cancelled_);
  r->set_compute_us(compute_us_);
  r->set_cancelled_compute_us(cancelled_compute_us_);
}

StageServer::StageServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StageServer::~StageServer() = default;

Result<std::unique_ptr<StageServer>> StageServer::Start(const NodeOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  SWARM_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<StageServer>(new StageServer(std::move(impl)));
}

const std::string& StageServer::address() const { return impl_->address_; }
const std::string& StageServer::model_id() const { return impl_->model_id_; }
const std::string& StageServer::node_id() const { return impl_->node_id_; }
namespace {
StageLoad load_from(const v1::InfoResponse& info) {
  StageLoad l;
  l.first_layer = info.first_layer();
  l.last_layer = info.last_layer();
  l.n_layer = info.n_layer();
  l.layer_tokens_per_second = info.layer_tokens_per_second();
  l.kv_bytes_free = static_cast<uint64_t>(std::max<int64_t>(info.kv_bytes_free(), 0));
  l.draining = info.draining();
  return l;
}
}  // namespace
StageLoad StageServer::load() {
  v1::InfoResponse info;
  impl_->info(&info);
  return load_from(info);
}
StageStats StageServer::stats() {
  v1::InfoResponse info;
  impl_->info(&info);
  StageStats s;
  s.load = load_from(info);
  s.sessions = info.active_sessions();
  s.queued_steps = info.queued_steps();
  s.kv_bytes_total = static_cast<uint64_t>(std::max<int64_t>(info.kv_bytes_total(), 0));
  s.steps_cancelled = info.steps_cancelled();
  s.compute_seconds = static_cast<double>(info.compute_us()) * 1e-6;
  s.cancelled_compute_seconds = static_cast<double>(info.cancelled_compute_us()) * 1e-6;
  s.batches = impl_->batches();
  return s;
}
void StageServer::drain() { impl_->drain(); }
void StageServer::wait_drained() { impl_->wait_drained(); }
void StageServer::shutdown() { impl_->shutdown(); }

}  // namespace swarm::node
