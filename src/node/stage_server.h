// The stage server: serves a contiguous range of a model's layers to sessions
// opened by gateways, over the swarm.v1.Stage gRPC service (doc/protocol.md).
//
// Threads: a fixed number, whatever the callers do. Streams are served on
// gRPC's callback API (its own fixed pool parses, validates and queues what
// arrives, and writes answers); one scheduler thread runs the queued steps,
// steps of different sessions together in one batch, long prompts in chunks
// between other sessions' steps; the compute pool; one timer thread (the
// emulated link delay); a reaper thread expires idle sessions. Pushes to next
// stages are callback streams too, so neither the scheduler nor a reader ever
// waits on the network.
//
// Bounded against hostile callers (doc/protocol.md, "Limits"): sessions in
// all, a session's context, tokens a step may sample, hops a step names and
// next stages a session pushes to, bytes waiting on each stream; a caller that
// does not read its answers is not read either. A failed step fails its
// session only.
//
// Its parts: stage_server.cc (the service and sessions), server_stream.h
// (the streams), step_scheduler.h (what runs next), batch_runner.cc (running
// a batch), idle_reaper.h, stage_session.h (a session's state). The timer,
// the reaper, the scheduler and a slowed batch wait on NodeOptions.clock;
// compute itself is measured on the real clock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/clock.h"
#include "engine/model_source.h"
#include "engine/status.h"
#include "node/batch_tally.h"
#include "net/connection_limiter.h"
#include "node/caller_quota.h"
#include "node/cheat.h"

namespace swarm::node {

struct NodeOptions {
  std::string model_path;
  int first_layer = 0;
  int last_layer = -1;                    // -1: through the last layer
  std::string listen = "127.0.0.1:0";     // port 0: any free port
  uint64_t kv_memory_bytes = 2ull << 30;  // KV budget over all sessions (reserved at open)
  double idle_timeout_s = 300;            // a session without messages this long is closed
  int link_delay_ms = 0;                  // every message sent leaves this much later
  // An answer whose write waits this long on its caller's flow control marks
  // the caller as not reading (server_stream.h): its stream's reads pause and
  // its steps wait until the write goes through. Answers too small to ever
  // fill the stream's byte limits (token ids, at the last stage) would
  // otherwise let such a caller have prompts run for as long as it likes.
  // An honest reader takes a write within a round trip and the time its link
  // needs for the bytes; pausing one whose link is the bottleneck costs it
  // nothing, as its answers could not leave sooner.
  int stuck_answer_ms = 250;
  int threads = 0;                        // compute threads; 0: all cores
  int max_batch_tokens = 512;             // tokens in one batch (a longer prompt runs in chunks)
  int context = 0;        // positions one session may hold; 0: the model's trained context
  int max_sessions = 256; // sessions open at once, from all callers
  bool no_mmap = false;                   // read weights into huge-page memory (faster decode)
  std::string device = "cpu";            // where the layers run (LoadOptions::device)
  bool progress = false;                  // a loading bar on stderr, if it is a terminal
  // Key file of the node's Ed25519 identity (swarm keygen). Set: the node serves
  // TLS only, with a certificate holding that key (net/tls.h), and reports the
  // key in Info. Empty: plaintext, as a node on a trusted network or in a test.
  std::string identity_path;
  // Who may call (doc/protocol.md, "Transport security"). With an identity,
  // callers of the Session stream must present their own identity (mutual TLS)
  // unless `allow_anonymous`; with `allow` (net::AllowList::Parse: node ids or
  // keys, or a file of them) only those may. Info answers anyone.
  bool allow_anonymous = false;
  std::string allow;
  // Sessions and queued steps per caller (its node id, or its IP address
  // without one); the total is max_sessions, not quota.sessions_total.
  CallerQuotaLimits quota;
  // New connections per caller address (net/connection_limiter.h); the node
  // closes the ones over it as soon as they are accepted. Plaintext nodes only:
  // with an identity, gRPC accepts (doc/protocol.md, "Limits").
  net::ConnectionLimits connections;
  // >= 1: after each batch, wait (slowdown - 1) x its compute time, so the node
  // behaves like a machine that many times slower (benchmarks of a slow stage).
  double slowdown = 1;
  double price_per_1k = 0;  // reported in Info (the DHT record announces it too)
  // Misbehaviour on purpose, for tests and benchmarks of audits (node/cheat.h).
  CheatOptions cheat;
  // > 0: behaves as a node on another device would (node/inexact_emulation.h):
  // output rows off by up to this relative amount, announced as inexact, with
  // sketches in its commitments.
  double emulate_inexact = 0;
  // The clock the node's timer, reaper and scheduler read and wait on; null:
  // the real one. Tests give a FakeClock (engine/clock.h); it must outlive the
  // server.
  Clock* clock = nullptr;
};

// Positions one session may hold on a node of `o` serving a model of `config`:
// --ctx-size, else the model's trained context, else 4096.
int session_context(const NodeOptions& o, const ModelConfig& config);

// What a node serves and how it fares, as its Info reports it: what its DHT
// record announces.
struct StageLoad {
  int first_layer = 0;
  int last_layer = 0;
  int n_layer = 0;
  double layer_tokens_per_second = 0;  // measured; 0 until the first batch ran
  uint64_t kv_bytes_free = 0;
  bool draining = false;
};

// How a node fares in numbers, for its /metrics (doc/metrics.md): its Info's
// figures and what the scheduler ran.
struct StageStats {
  StageLoad load;
  int sessions = 0;      // open now
  int queued_steps = 0;  // waiting for a batch now
  uint64_t kv_bytes_total = 0;
  int64_t steps_cancelled = 0;
  double compute_seconds = 0;            // all batches run, slowdown included
  double cancelled_compute_seconds = 0;  // of which on steps cancelled after they ran
  BatchTally::Snapshot batches;
};

class StageServer {
 public:
  // Loads the model's parts for the range (embedding iff first_layer == 0, head
  // iff last_layer == n_layer), computes its content id and starts serving.
  static Result<std::unique_ptr<StageServer>> Start(const NodeOptions& options);
  ~StageServer();  // shuts down at once (open streams are cancelled)
  StageServer(const StageServer&) = delete;
  StageServer& operator=(const StageServer&) = delete;

  // "host:port" actually bound (the port chosen when the request said 0).
  const std::string& address() const;
  const std::string& model_id() const;
  // The node id of --identity; empty when serving plaintext.
  const std::string& node_id() const;

  StageLoad load();
  StageStats stats();

  // From now on, refuse new sessions; existing ones run until closed or expired.
  void drain();
  // Blocks until drain() was called and no session is left.
  void wait_drained();
  // Stops serving: cancels open streams and waits for the threads.
  void shutdown();

 private:
  class Impl;  // stage_server_impl.h
  explicit StageServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace swarm::node
