// Where reputation survives a restart (doc/trust.md, "Reputation"): tables
// prefixed `reputation_` in the gateway's trust database (SQLite, WAL; the
// credits ledger keeps its own tables in the same file). Per node id, its
// state (trust/reputation.h); the last events of each node, for operators to
// see why a score is what it is; and the proofs of fraud that excluded nodes.
// Not thread-safe: ReputationBook (reputation_book.h) guards one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/status.h"
#include "trust/reputation.h"

struct sqlite3;

namespace swarm::trust {

// Node ids are 40 hex digits, or a peer's HOST:PORT where it has no identity;
// anything longer is refused rather than stored.
inline constexpr size_t kMaxNodeIdBytes = 256;
// A proof is a few signed commitments; more than this is refused.
inline constexpr size_t kMaxProofBytes = 1 << 20;
inline constexpr size_t kMaxDetailBytes = 1024;  // an event's or a proof's text, cut to this

struct ReputationEventRecord {
  int64_t id = 0;  // ascending in the order recorded
  std::string node_id;
  ReputationEvent event = ReputationEvent::kAuditPassed;
  double at = 0;
  double score_after = 0;  // the node's score right after it
  std::string detail;
};

struct FraudProof {
  int64_t id = 0;
  std::string node_id;
  std::string proof;  // opaque bytes from the auditor (e.g. serialized signed commitments)
  std::string reason;
  double at = 0;
};

class ReputationStore {
 public:
  // Opens (creating if needed) the database at `path` and its reputation_
  // tables. Each node's event log keeps its last `events_per_node` events.
  static Result<std::unique_ptr<ReputationStore>> Open(const std::string& path,
                                                       size_t events_per_node = 256);
  ~ReputationStore();
  ReputationStore(const ReputationStore&) = delete;
  ReputationStore& operator=(const ReputationStore&) = delete;

  // Every node's stored state.
  Result<std::map<std::string, ReputationState>> load();
  // In one transaction: `state` becomes node_id's, `event` is appended to its
  // log (its id and node_id are set here), the log is cut to the last
  // events_per_node, and `proof`, when given, is stored.
  Status save(const std::string& node_id, const ReputationState& state,
              const ReputationEventRecord& event, const FraudProof* proof = nullptr);
  // node_id's logged events, oldest first.
  Result<std::vector<ReputationEventRecord>> events(const std::string& node_id);
  // node_id's stored proofs, oldest first.
  Result<std::vector<FraudProof>> proofs(const std::string& node_id);

 private:
  ReputationStore(sqlite3* db, size_t events_per_node)
      : db_(db), events_per_node_(events_per_node) {}
  Status exec(const char* sql);

  sqlite3* db_;
  const size_t events_per_node_;
};

}  // namespace swarm::trust
