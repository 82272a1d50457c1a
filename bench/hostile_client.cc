// A hostile caller of one node, for the soak benchmark (bench/soak_bench.sh):
// for --seconds, several threads send the attacks a node must survive
// (doc/protocol.md, "Limits"), each with its own messages, over and over:
//   huge    a Step of 2M tokens, and sessions asking for 2^30 positions
//   hops    a Step naming 1000 next hops, and a session pushing to many addresses
//   nan     hidden states holding NaN and infinity (not at the first stage)
//   garbage bytes that are no StageRequest
//   prompt  long prompts, as big as the node's context allows
//   hog     sessions of the node's whole context opened and left idle, up to --hog-sessions
//   mute    a stream that sends steps and never reads its answers
// Prints one JSON line: what was sent and how the node answered.
//   hostile_client --target HOST:PORT --first A --last B --n-layer L --model-id ID
//                  [--d-model D] [--vocab V] [--seconds S] [--hog-sessions N]
//                  [--attacks huge,hops,nan,garbage,prompt,hog,mute]   (default: all)
//                  [--rate R]   rounds per second of each attack (default 10), so that
//                               the attacker's own CPU does not starve the machine
//                               it shares with the nodes in a benchmark
//                  [--from HOST] the local address its connections come from (say
//                               127.0.0.2: a stranger, where the node does not count
//                               127.0.0.1, its own machine, against connection limits)
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/bound_channel.h"
#include "net/tensor_codec.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace {

using swarm::v1::StageRequest;
using swarm::v1::StageResponse;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string target, model_id, from;
  int first = 0, last = 0, n_layer = 0, d_model = 0, vocab = 32, hog_sessions = 8;
  double seconds = 60;
  std::string attacks = "huge,hops,nan,garbage,prompt,hog,mute";
  double rate = 10;
  bool wants(const std::string& a) const { return ("," + attacks + ",").find("," + a + ",") != std::string::npos; }
};

std::mutex counts_mu;
std::map<std::string, long> counts;  // "attack:answer" -> how many
void count(const std::string& key) {
  std::lock_guard<std::mutex> lock(counts_mu);
  ++counts[key];
}

StageRequest open_req(const Options& o, const std::string& id, int max_length) {
  StageRequest r;
  auto* m = r.mutable_open();
  m->set_session_id(id);
  m->set_model_id(o.model_id);
  m->set_first_layer(o.first);
  m->set_last_layer(o.last);
  m->set_max_length(max_length);
  m->set_is_first(o.first == 0);
  m->set_is_last(o.last == o.n_layer);
  return r;
}

StageRequest step_req(const Options& o, const std::string& id, uint64_t step, int n, int position,
                      float fill) {
  StageRequest r;
  auto* s = r.mutable_step();
  s->set_session_id(id);
  s->set_step_id(step);
  for (int i = 0; i < n; ++i) s->add_tokens((i * 7 + 1) % o.vocab);
  s->set_position(position);
  s->set_rewind(true);
  if (o.first > 0) {
    std::vector<float> h(static_cast<size_t>(n) * o.d_model, 0.01f);
    if (!std::isfinite(fill)) h[h.size() / 2] = fill;
    swarm::net::encode_tensor(h.data(), n, o.d_model, swarm::v1::Tensor::F32, s->mutable_hidden());
  }
  return r;
}

// A new connection to the target, from `o.from` when given; null when the
// connect fails.
std::shared_ptr<grpc::Channel> connect(const Options& o,
                                       const grpc::ChannelArguments& args = grpc::ChannelArguments()) {
  if (o.from.empty()) return grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(), args);
  return swarm::net::channel_from(o.from, o.target, args);
}

// One stream: sends what `attack` makes, reads the answers, counts them.
// Waits for round `round`'s turn at `rate` rounds per second.
void pace(const Options& o, Clock::time_point start, int round) {
  if (o.rate <= 0) return;
  std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(round / o.rate)));
}

void run_stream(const Options& o, const std::string& name, Clock::time_point end,
                const std::function<void(int round, grpc::ClientReaderWriter<StageRequest, StageResponse>*)>& attack) {
  const auto start = Clock::now();
  for (int round = 0; Clock::now() < end; ++round) {
    pace(o, start, round);
    auto channel = connect(o);
    if (!channel) {
      count(name + ":connect_failed");
      continue;
    }
    auto stub = swarm::v1::Stage::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto stream = stub->Session(&ctx);
    std::thread reader([&] {
      StageResponse r;
      while (stream->Read(&r))
        count(name + ":" + (r.has_error() ? "error" + std::to_string(r.error().code())
                                          : r.has_opened() ? "opened" : "result"));
    });
    attack(round, stream.get());
    stream->WritesDone();
    reader.join();
    const grpc::Status st = stream->Finish();
    count(name + ":stream_end" + std::to_string(st.error_code()));
  }
}

// The node's context (OpenSession.max_length's limit), read from its refusal
// of a session too long for it ("must be 1 to N"); `fallback` if that fails.
int probe_context(const Options& o, int fallback) {
  auto channel = connect(o);
  if (!channel) return fallback;
  auto stub = swarm::v1::Stage::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Session(&ctx);
  stream->Write(open_req(o, "context-probe", 1 << 30));
  stream->WritesDone();
  int context = fallback;
  StageResponse r;
  while (stream->Read(&r)) {
    const std::string& m = r.error().message();
    const size_t at = m.find("must be 1 to ");
    if (r.has_error() && at != std::string::npos) context = std::atoi(m.c_str() + at + 13);
  }
  stream->Finish();
  return context > 0 ? context : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--target") o.target = v;
    else if (k == "--model-id") o.model_id = v;
    else if (k == "--first") o.first = std::atoi(v.c_str());
    else if (k == "--last") o.last = std::atoi(v.c_str());
    else if (k == "--n-layer") o.n_layer = std::atoi(v.c_str());
    else if (k == "--d-model") o.d_model = std::atoi(v.c_str());
    else if (k == "--vocab") o.vocab = std::atoi(v.c_str());
    else if (k == "--seconds") o.seconds = std::atof(v.c_str());
    else if (k == "--hog-sessions") o.hog_sessions = std::atoi(v.c_str());
    else if (k == "--attacks") o.attacks = v;
    else if (k == "--rate") o.rate = std::atof(v.c_str());
    else if (k == "--from") o.from = v;
    else {
      std::fprintf(stderr, "hostile_client: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (o.target.empty() || o.model_id.empty() || o.last <= o.first || (o.first > 0 && o.d_model <= 0)) {
    std::fprintf(stderr, "hostile_client: needs --target, --model-id, --first < --last, and "
                         "--d-model when --first > 0\n");
    return 2;
  }
  // Idle sessions and long prompts as large as the node allows (a session
  // longer than its context is refused, and would attack nothing).
  const int context = probe_context(o, 2048);
  const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o.seconds));
  using Stream = grpc::ClientReaderWriter<StageRequest, StageResponse>;
  // Two million tokens: built once, sent every round.
  StageRequest big = step_req(o, "huge", 1, 1, 0, 0);
  big.mutable_step()->clear_hidden();
  for (int i = 1; i < 2'000'000; ++i) big.mutable_step()->add_tokens(1);
  std::vector<std::thread> threads;
  if (o.wants("huge")) threads.emplace_back([&] {
    run_stream(o, "huge", end, [&](int round, Stream* s) {
      const std::string id = "huge" + std::to_string(round);
      s->Write(open_req(o, id, 1 << 30));
      s->Write(open_req(o, id, 64));
      big.mutable_step()->set_session_id(id);
      s->Write(big);
    });
  });
  if (o.wants("hops")) threads.emplace_back([&] {
    run_stream(o, "hops", end, [&](int round, Stream* s) {
      const std::string id = "hops" + std::to_string(round);
      s->Write(open_req(o, id, 64));
      for (int k = 0; k < 8; ++k) {
        StageRequest r = step_req(o, id, 1 + k, 1, 0, 0);
        const int hops = k == 0 ? 1000 : 1;
        for (int h = 0; h < hops; ++h)
          r.mutable_step()->add_next_hops()->set_address("127.0.0.1:" + std::to_string(2 + k));
        s->Write(r);
      }
    });
  });
  if (o.first > 0 && o.wants("nan"))
    threads.emplace_back([&] {
      run_stream(o, "nan", end, [&](int round, Stream* s) {
        const std::string id = "nan" + std::to_string(round);
        s->Write(open_req(o, id, 64));
        s->Write(step_req(o, id, 1, 4, 0, std::numeric_limits<float>::quiet_NaN()));
        s->Write(step_req(o, id, 2, 4, 0, std::numeric_limits<float>::infinity()));
      });
    });
  if (o.wants("garbage")) threads.emplace_back([&] {
    const auto start = Clock::now();
    for (int round = 0; Clock::now() < end; ++round) {
      pace(o, start, round);
      auto channel = connect(o);
      if (!channel) {
        count("garbage:connect_failed");
        continue;
      }
      grpc::GenericStub generic(channel);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      grpc::CompletionQueue cq;
      auto call = generic.PrepareCall(&ctx, "/swarm.v1.Stage/Session", &cq);
      void* tag;
      bool ok;
      call->StartCall(reinterpret_cast<void*>(1));
      cq.Next(&tag, &ok);
      for (int i = 0; i < 20 && ok; ++i) {
        const std::string garbage = "\xff\xff\xff\xff\x0f garbage " + std::to_string(i);
        grpc::Slice slice(garbage);
        grpc::ByteBuffer bb(&slice, 1);
        call->Write(bb, reinterpret_cast<void*>(2));
        cq.Next(&tag, &ok);
      }
      count(std::string("garbage:") + (ok ? "sent" : "stream_ended"));
      ctx.TryCancel();
      grpc::Status st;
      call->Finish(&st, reinterpret_cast<void*>(3));
      cq.Next(&tag, &ok);
      cq.Shutdown();
      while (cq.Next(&tag, &ok)) {
      }
    }
  });
  if (o.wants("prompt")) threads.emplace_back([&] {
    run_stream(o, "prompt", end, [&](int round, Stream* s) {
      const std::string id = "prompt" + std::to_string(round);
      s->Write(open_req(o, id, context));
      s->Write(step_req(o, id, 1, context - 48, 0, 0));
    });
  });
  if (o.wants("hog")) threads.emplace_back([&] {
    run_stream(o, "hog", end, [&](int round, Stream* s) {
      for (int k = 0; k < o.hog_sessions; ++k)
        s->Write(open_req(o, "hog" + std::to_string(round) + "-" + std::to_string(k), context));
      while (Clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    });
  });
  if (o.wants("mute")) threads.emplace_back([&] {
    while (Clock::now() < end) {
      // Its transport takes in only a little more than it reads (no window
      // growth from bandwidth probes, 4 KiB a stream), as a client that
      // withholds HTTP/2 window updates would: the node's writes then wait.
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 4096);
      auto channel = connect(o, args);
      if (!channel) {
        count("mute:connect_failed");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      auto stub = swarm::v1::Stage::NewStub(channel);
      grpc::ClientContext ctx;
      auto stream = stub->Session(&ctx);
      stream->Write(open_req(o, "mute", 512));
      std::atomic<bool> done{false};
      std::thread writer([&] {
        const StageRequest step = step_req(o, "mute", 1, 256, 0, 0);
        const auto start = Clock::now();
        for (int i = 0; i < 100000 && !done; ++i) {
          pace(o, start, i);
          StageRequest r = step;
          r.mutable_step()->set_step_id(1 + i);
          if (!stream->Write(r)) break;
        }
      });
      while (Clock::now() < end && Clock::now() < end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        if (Clock::now() >= end) break;
      }
      done = true;
      ctx.TryCancel();
      writer.join();
      count("mute:round");
    }
  });
  for (auto& t : threads) t.join();
  std::string json = "{\"bench\":\"hostile_client\",\"target\":\"" + o.target + "\"";
  for (const auto& [k, v] : counts) json += ",\"" + k + "\":" + std::to_string(v);
  std::printf("%s}\n", json.c_str());
  return 0;
}
