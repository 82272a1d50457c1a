// The gateway's side of a swarm: drives one generation session across a chain of
// nodes that together hold every layer, over the wire protocol of
// proto/swarm/v1/stage.proto (see doc/protocol.md).
//
// Push mode (the default): the gateway sends each step to the first stage with
// the remaining hops; every stage forwards its output to the next, and only the
// last (which holds the head and samples) answers, so a decode step costs one
// trip through the chain. Relay mode (for comparison): the gateway carries every
// stage's output to the next itself.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/peer_address.h"
#include "pipeline/auditor.h"
#include "pipeline/coverage_wait.h"
#include "pipeline/generation.h"
#include "pipeline/peer_reachability.h"
#include "pipeline/peer_standing.h"
#include "pipeline/speculation_options.h"
#include "pipeline/step_deadline.h"
#include "routing/chain.h"
#include "trust/speed_check.h"

namespace swarm {
namespace v1 {
class StepResult;
}
namespace trust {
class ReputationBook;
}
class Clock;
class StageTransport;

struct PipelineOptions {
  // Every node to consider. One with a pin is reached over TLS and only if its
  // certificate holds the pinned key (else it counts as unreachable); the
  // steps pushed to it from other stages are pinned to the same key.
  std::vector<net::PeerAddress> peers;
  bool push = true;                // false: gateway relay
  bool wire_f16 = false;           // hidden states as f16 on the wire (halves traffic, not bit-exact)
  int context_length = 2048;
  ChainCosts costs;
  // When a step is overdue and its stages are probed (pipeline/step_deadline.h);
  // `deadlines.ceiling` is the absolute step timeout.
  StepDeadlineOptions deadlines;
  std::chrono::milliseconds survey_interval{5000}; // how long peers' Info answers are trusted
  // A survey's Info call to each of a peer's addresses gets this long.
  std::chrono::milliseconds probe_timeout{2000};
  // Peers that cannot be reached are remembered; those that time out are set
  // aside and probed again with backoff (pipeline/peer_reachability.h).
  ReachabilityOptions reachability;
  // A request that finds no route looks again and waits briefly for coverage
  // (pipeline/coverage_wait.h).
  CoverageWaitOptions coverage_wait;
  // Emulated one-way delay on every step the gateway sends (benchmarks of WAN
  // links; nodes delay what they send with their own --link-delay-ms).
  std::chrono::milliseconds link_delay{0};
  // After a stage fails (dies; stalls past its step deadline and does not
  // answer the probe; errors), the gateway
  // routes around it and replays the session on a new chain, at most this many
  // times per request; the failed peer is avoided for failure_memory, then put
  // on probation: the next session is routed through it, so a peer that is
  // back gets traffic again.
  int max_recoveries = 3;
  std::chrono::milliseconds failure_memory{60000};
  // Speculative decoding (push mode only; relay decodes plainly).
  SpeculationOptions speculation;
  // The model's layout id (net/model_id.h), sent in OpenSession; a peer with
  // another model id but this layout id is named in logs and errors as serving
  // other weights of the same architecture.
  std::string layout_id;
  // A node short of KV memory refuses to open a session (RESOURCE_EXHAUSTED):
  // the request then waits for room, opening again with backoff (on the chain
  // routed anew) until queue_timeout, with at most max_queue requests waiting
  // so at once; only then is it refused.
  int max_queue = 256;
  std::chrono::milliseconds queue_timeout{60000};
  // Audits (doc/trust.md, "Audits"): each step is sampled with each of its
  // stages' audit rate (audit_rate, or what set_audit_rate_of says, e.g.
  // higher on probation); a session with a sampled step is recomputed in the
  // background, by `audit_local` (this process's engine) or by other nodes
  // serving the same layers, and judged; a proven fraud is never routed
  // through again. `audit_sync` (needs audit_local): every step is checked
  // before its token goes out, and a wrong one is routed around and replayed.
  double audit_rate = 0;
  bool audit_sync = false;
  std::shared_ptr<class LocalReference> audit_local;
  int audit_queue = 64;     // sessions waiting for their audit; more are dropped (and counted)
  uint64_t audit_seed = 0;  // 0: drawn from the OS, so nodes cannot predict which steps are audited
  // Reputation (trust/reputation_book.h; may be null: every peer scores 1).
  // The survey gives each peer its score and exclusion, by node id where the
  // peer's identity was verified, else by address (PipelineBackend::
  // reputation_key); failures feed it timeouts and disconnects, step timings
  // its speed check; audits record into it. Must outlive the backend.
  trust::ReputationBook* reputation = nullptr;
  trust::SpeedCheckParams speed_check;
  // Called with every step answer a chain session receives (the chain, and
  // the answer with its timings and commitments). The backend sets it to its
  // own observe_step(); a hook given here is called first.
  std::function<void(const std::vector<ChainStage>&, const v1::StepResult&)> on_step_result;
  // How stages are reached (pipeline/stage_transport.h; null: gRPC, with
  // link_delay emulated on what the gateway sends) and the clock chain
  // sessions and the speculation controller wait on and time with (null: the
  // real one). Tests and simulations give a simulated chain and its clock.
  std::shared_ptr<StageTransport> transport;
  Clock* clock = nullptr;
};

class SpeculationMemory;
class ChainSession;
struct PeerProbe;

class PipelineBackend : public GenerationBackend {
 public:
  using Clock = std::chrono::steady_clock;

  // `model_id` is the content hash the nodes must serve; n_layer from the model.
  PipelineBackend(std::string model_id, int n_layer, PipelineOptions options);
  ~PipelineBackend() override;

  Result<GenerationResult> generate(const GenerationRequest& request, const TokenCallback& on_token) override;
  int context_length() const override { return options_.context_length; }
  void release_waiting() override;
  Result<double> price_per_1k_tokens() override;
  Result<double> price_per_1k_tokens_now() override;
  // Logprobs come from the last stage (OpenSession.logprobs); a request with
  // them is decoded plainly, without speculation.
  bool supports_logprobs() const override { return true; }

  // Asks every peer what it serves (Info, with a deadline) and chooses a chain.
  // Without one, looks at the swarm again at once (set_relook's look-up and a
  // survey); with `wait_for_coverage` it then waits while coverage may still
  // come (coverage_wait.h). The error names the uncovered layers and the
  // unreachable peers that announce them.
  Result<std::vector<ChainStage>> route(bool wait_for_coverage = false);
  // The sum of the route's stages' prices, waiting for a route or not.
  Result<double> chain_price(bool wait);
  // The peers as last surveyed.
  std::vector<PeerSnapshot> peers();
  // Every peer known, reachable or not, surveyed first when the last survey
  // is older than survey_interval (the swarm page polls it).
  std::vector<PeerStanding> standing();
  // Replaces the nodes to consider (discovery learns them as the swarm
  // changes); a different set is surveyed before the next route.
  void set_peers(std::vector<net::PeerAddress> peers);
  // How to look for peers again at once when no route exists (a DHT look-up
  // that calls set_peers); called from a request's thread with no lock held.
  void set_relook(std::function<void()> relook);

  // Audits' verdicts (called on the audit thread, and on a request's thread
  // with audit_sync): what reputation, proofs and the ledger are fed.
  void set_verdict_listener(VerdictFn listener);
  // A node's audit rate from the base rate (probation); key: reputation_key().
  void set_audit_rate_of(std::function<double(const std::string& key, double base)> rate_of);
  AuditStats audit_stats() const;
  // Since start: failures blamed on a node (it died, stalled, erred or failed
  // an audit), and sessions replayed on a new chain after one (failovers).
  int64_t node_failures() const { return node_failures_.load(std::memory_order_relaxed); }
  int64_t recoveries() const { return recoveries_.load(std::memory_order_relaxed); }
  // Steps waited on past the step timeout instead of replayed: every stage
  // answered and no other chain could take the session (each costs one of
  // the request's max_recoveries).
  int64_t ceiling_waits() const { return ceiling_waits_.load(std::memory_order_relaxed); }
  // Blocks until every audit queued so far is judged.
  void wait_audits();
  // Nodes (trust keys) a proven fraud excludes from every route.
  std::set<std::string> excluded() const;
  // What reputation is kept under for a peer: its node id where its identity
  // was verified (a pinned TLS peer), else its address.
  static std::string reputation_key(const PeerSnapshot& peer);
  // The reputation key of the surveyed peer at `address` (the address itself
  // when it is not surveyed).
  std::string reputation_key_of(const std::string& address);
  // A step answer through `chain`: each stage's StageTiming against the speed
  // it announced (trust/speed_check.h); a lie is recorded in the reputation.
  void observe_step(const std::vector<ChainStage>& chain, const v1::StepResult& result);

 private:
  Status survey_locked();
  // What a request's sessions leave for trust: the work each node did (in
  // `result`) and audit jobs for the sampled ones.
  void finish_trust(const std::vector<trust::AuditedSession>& ran, const std::vector<int32_t>& history,
                    const SamplingParams& sampling, GenerationResult* result);
  void on_verdicts(const AuditJob& job, const std::vector<trust::Verdict>& verdicts);
  // A reference for an audit: this process's engine (audit_local), else a
  // chain of other nodes serving the same ranges (none of `avoid`, none of the
  // audited ones at the same range) that recompute the window with per-row
  // hashes.
  Result<Reference> reference_for(const AuditJob& job, const std::vector<std::string>& avoid);
  Result<Reference> remote_reference(const AuditJob& job, const std::vector<std::string>& avoid);
  // Records the outcome of a probe of `peer` sent at `asked`; true if it answered.
  bool note_probe_locked(const net::PeerAddress& peer, const PeerProbe& probe, Clock::time_point asked);
  void look_locked(std::unique_lock<std::mutex>& lock);
  NoRouteView no_route_view_locked(Clock::time_point arrived);
  void reprobe_loop();
  // Sets recently_failed / on_probation in snapshot_ as of `now`.
  void apply_health_locked(Clock::time_point now);
  // Sets own_sessions / own_sessions_reported in snapshot_ from own_sessions_.
  void apply_own_sessions_locked();
  // route(), and where `held` is given and a chain is found: the sessions
  // counted for *held are released and the new chain's counted instead, under
  // the same lock as the choice (so requests arriving together see each
  // other's choices), and *held becomes the new chain.
  Result<std::vector<ChainStage>> route_holding(bool wait_for_coverage, std::vector<ChainStage>* held);
  // Ends what route_holding counted for *held (the request's session ended).
  void release_held(std::vector<ChainStage>* held);
  // Adds `delta` to own_sessions_ of every stage of `chain`.
  void count_own_sessions_locked(const std::vector<ChainStage>& chain, int delta);
  // A session is routed through `chain`: its peers' probation is over.
  void end_probation(const std::vector<ChainStage>& chain);
  // Avoids `address` for failure_memory; a first failure there also counts
  // against its reputation (a timeout or a disconnect, by `why`'s code).
  void report_failure(const std::string& address, const Status& why);
  std::string probe_for_failure(const std::vector<ChainStage>& chain);
  // Whether a failover could leave `chain` (other_chain_exists on the peers as
  // routing sees them now).
  bool other_route(const std::vector<ChainStage>& chain);
  // After `refusal` (RESOURCE_EXHAUSTED) opening `session`: waits for room as
  // PipelineOptions::max_queue and queue_timeout say; the last open's status.
  // `*released`: the wait was ended by release_waiting().
  // Each new route is held in *held (route_holding).
  Status open_when_room(std::unique_ptr<ChainSession>& session,
                        std::vector<ChainStage>& chain, const SamplingParams& sp, int max_length,
                        Status refusal, bool* released, std::vector<ChainStage>* held,
                        int logprobs = -1);

  const std::string model_id_;
  const int n_layer_;
  const PipelineOptions options_;
  std::mutex mu_;
  std::vector<net::PeerAddress> peers_;  // options_.peers, then set_peers'
  std::vector<PeerSnapshot> snapshot_;
  std::chrono::steady_clock::time_point surveyed_at_{};
  std::map<std::string, std::chrono::steady_clock::time_point> failed_at_;
  std::set<std::string> returning_;  // failed, and no session routed through since
  // Sessions this gateway's requests hold through each peer now (by address),
  // and what that was at the peer's last survey: the load routing weighs
  // between surveys (routing/stage_load.h).
  std::map<std::string, int> own_sessions_, own_sessions_surveyed_;
  StepTimeBook step_times_;          // what steps took, by chain: the deadlines' base
  std::map<std::string, std::string> mismatch_logged_;  // address -> the other model id last logged
  std::map<std::string, std::string> survey_error_;  // by peer key: the last logged, so once per change
  std::unique_ptr<SpeculationMemory> speculation_memory_;
  std::atomic<int> waiting_for_room_{0};
  std::atomic<int64_t> node_failures_{0}, recoveries_{0}, ceiling_waits_{0};
  std::mutex wait_mu_;  // guards releases_
  std::condition_variable wait_cv_;
  uint64_t releases_ = 0;  // release_waiting() calls: a waiter seeing it change stops waiting
  // Survey and route state (guarded by mu_):
  PeerReachability reachability_;           // by peer key
  std::map<std::string, int> answered_at_;  // by peer key: the address index that answered last
  std::map<std::string, PeerSnapshot> last_seen_;  // by peer key: its last answer
  const Clock::time_point started_;
  Clock::time_point last_look_{};
  bool looking_ = false;  // a request is looking (relook_ runs unlocked)
  std::function<void()> relook_;
  std::condition_variable changed_;  // peers answered or changed; or stopping_
  bool stopping_ = false;
  std::thread reprober_;  // probes set-aside peers when due
  // Audits (guarded by audit_mu_): nodes proven to cheat, the listener, the
  // audit rate hook and the secret sampling RNG.
  mutable std::mutex audit_mu_;
  std::set<std::string> excluded_;
  VerdictFn verdict_listener_;
  std::function<double(const std::string&, double)> audit_rate_of_;
  std::mt19937_64 audit_rng_;
  // Audits dropped on a full queue since the last warning about them: a
  // gateway whose auditor cannot keep up says so once a minute, not per
  // request (its metrics count every drop).
  int64_t audit_drops_unlogged_ = 0;
  std::chrono::steady_clock::time_point audit_drop_logged_{};
  std::unique_ptr<Auditor> auditor_;  // last: its thread calls back into this object
  // Reputation: what the last survey said of each address (its key and
  // announced speed), under a lock of its own, as step answers look it up
  // while a survey may hold mu_.
  struct Announced {
    std::string key;
    double layer_tokens_per_second = 0;
  };
  std::mutex trust_mu_;
  std::map<std::string, Announced> announced_;  // by address
  trust::SpeedWatch speed_watch_;
};

// "a:1 -> b:2" with each stage's layers, for logs and the demo.
std::string describe_chain(const std::vector<ChainStage>& chain);

}  // namespace swarm
