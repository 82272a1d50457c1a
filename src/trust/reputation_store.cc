#include "trust/reputation_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <string_view>
#include <utility>

namespace swarm::trust {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS reputation_nodes (
  node_id TEXT PRIMARY KEY,
  alpha REAL NOT NULL,
  beta REAL NOT NULL,
  updated_at REAL NOT NULL,
  audits_passed INTEGER NOT NULL DEFAULT 0,
  audits_failed INTEGER NOT NULL DEFAULT 0,
  audits_disputed INTEGER NOT NULL DEFAULT 0,
  timeouts INTEGER NOT NULL DEFAULT 0,
  disconnects INTEGER NOT NULL DEFAULT 0,
  speed_lies INTEGER NOT NULL DEFAULT 0,
  excluded INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS reputation_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  node_id TEXT NOT NULL,
  event TEXT NOT NULL,
  at REAL NOT NULL,
  score_after REAL NOT NULL,
  detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS reputation_events_by_node ON reputation_events (node_id, id);
CREATE TABLE IF NOT EXISTS reputation_proofs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  node_id TEXT NOT NULL,
  proof BLOB NOT NULL,
  reason TEXT NOT NULL,
  at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reputation_proofs_by_node ON reputation_proofs (node_id, id);
)sql";

// A prepared statement, finalized when it goes.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Status status(const char* what) const { return rc_ == SQLITE_OK ? Status::Ok() : error(what); }
  void bind(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void bind_blob(int i, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  Status run(const char* what) {
    const int rc = step();
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? Status::Ok() : error(what);
  }
  std::string text(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p ? std::string(static_cast<const char*>(p),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
             : std::string();
  }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  Status error(const char* what) const {
    return Status::IOError(std::string("reputation store: ") + what + ": " + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

std::string cut(std::string s) {
  if (s.size() > kMaxDetailBytes) s.resize(kMaxDetailBytes);
  return s;
}

}  // namespace

Result<std::unique_ptr<ReputationStore>> ReputationStore::Open(const std::string& path,
                                                               size_t events_per_node) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    const std::string why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status::IOError("trust database " + path + ": " + why);
  }
  std::unique_ptr<ReputationStore> store(
      new ReputationStore(db, std::max<size_t>(1, events_per_node)));
  // The ledger writes the same file from its own connection: wait for its
  // transactions rather than fail at once.
  sqlite3_busy_timeout(db, 10000);
  // WAL: readers never block the writer, and a commit is one append. NORMAL
  // sync in WAL mode loses at most the last commits on power loss, never
  // consistency; reputation is evidence, not money.
  SWARM_RETURN_IF_ERROR(store->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
                            .annotate("trust database " + path));
  SWARM_RETURN_IF_ERROR(store->exec(kSchema).annotate("trust database " + path));
  return store;
}

ReputationStore::~ReputationStore() { sqlite3_close(db_); }

Status ReputationStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) == SQLITE_OK) return Status::Ok();
  const std::string why = err ? err : sqlite3_errmsg(db_);
  sqlite3_free(err);
  return Status::IOError("reputation store: " + why);
}

Result<std::map<std::string, ReputationState>> ReputationStore::load() {
  Statement q(db_,
              "SELECT node_id, alpha, beta, updated_at, audits_passed, audits_failed, "
              "audits_disputed, timeouts, disconnects, speed_lies, excluded FROM reputation_nodes");
  SWARM_RETURN_IF_ERROR(q.status("load"));
  std::map<std::string, ReputationState> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    ReputationState s;
    s.alpha = q.real(1);
    s.beta = q.real(2);
    s.updated_at = q.real(3);
    s.audits_passed = q.integer(4);
    s.audits_failed = q.integer(5);
    s.audits_disputed = q.integer(6);
    s.timeouts = q.integer(7);
    s.disconnects = q.integer(8);
    s.speed_lies = q.integer(9);
    s.excluded = q.integer(10) != 0;
    out[q.text(0)] = s;
  }
  if (rc != SQLITE_DONE)
    return Status::IOError(std::string("reputation store: load: ") + sqlite3_errmsg(db_));
  return out;
}

Status ReputationStore::save(const std::string& node_id, const ReputationState& state,
                             const ReputationEventRecord& event, const FraudProof* proof) {
  if (node_id.empty() || node_id.size() > kMaxNodeIdBytes)
    return Status::InvalidArgument("reputation store: node id of " +
                                   std::to_string(node_id.size()) + " bytes (1 to " +
                                   std::to_string(kMaxNodeIdBytes) + ")");
  if (proof && proof->proof.size() > kMaxProofBytes)
    return Status::InvalidArgument("reputation store: fraud proof of " +
                                   std::to_string(proof->proof.size()) + " bytes; the limit is " +
                                   std::to_string(kMaxProofBytes));
  // IMMEDIATE: take the write lock now, so a busy database is waited for
  // here and not found half-way through.
  SWARM_RETURN_IF_ERROR(exec("BEGIN IMMEDIATE"));
  auto body = [&]() -> Status {
    Statement up(db_,
                 "INSERT INTO reputation_nodes (node_id, alpha, beta, updated_at, audits_passed, "
                 "audits_failed, audits_disputed, timeouts, disconnects, speed_lies, excluded) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
                 "ON CONFLICT (node_id) DO UPDATE SET alpha = ?2, beta = ?3, updated_at = ?4, "
                 "audits_passed = ?5, audits_failed = ?6, audits_disputed = ?7, timeouts = ?8, "
                 "disconnects = ?9, speed_lies = ?10, excluded = ?11");
    SWARM_RETURN_IF_ERROR(up.status("save state"));
    up.bind(1, node_id);
    up.bind(2, state.alpha);
    up.bind(3, state.beta);
    up.bind(4, state.updated_at);
    up.bind(5, state.audits_passed);
    up.bind(6, state.audits_failed);
    up.bind(7, state.audits_disputed);
    up.bind(8, state.timeouts);
    up.bind(9, state.disconnects);
    up.bind(10, state.speed_lies);
    up.bind(11, static_cast<int64_t>(state.excluded ? 1 : 0));
    SWARM_RETURN_IF_ERROR(up.run("save state"));

    Statement ev(db_,
                 "INSERT INTO reputation_events (node_id, event, at, score_after, detail) "
                 "VALUES (?1, ?2, ?3, ?4, ?5)");
    SWARM_RETURN_IF_ERROR(ev.status("log event"));
    ev.bind(1, node_id);
    ev.bind(2, event_name(event.event));
    ev.bind(3, event.at);
    ev.bind(4, event.score_after);
    ev.bind(5, cut(event.detail));
    SWARM_RETURN_IF_ERROR(ev.run("log event"));

    // Keep the newest events_per_node: drop those at or below the id just
    // past them.
    Statement trim(db_,
                   "DELETE FROM reputation_events WHERE node_id = ?1 AND id <= "
                   "(SELECT id FROM reputation_events WHERE node_id = ?1 "
                   "ORDER BY id DESC LIMIT 1 OFFSET ?2)");
    SWARM_RETURN_IF_ERROR(trim.status("trim events"));
    trim.bind(1, node_id);
    trim.bind(2, static_cast<int64_t>(events_per_node_));
    SWARM_RETURN_IF_ERROR(trim.run("trim events"));

    if (proof) {
      Statement pr(
          db_,
          "INSERT INTO reputation_proofs (node_id, proof, reason, at) VALUES (?1, ?2, ?3, ?4)");
      SWARM_RETURN_IF_ERROR(pr.status("store proof"));
      pr.bind(1, node_id);
      pr.bind_blob(2, proof->proof);
      pr.bind(3, cut(proof->reason));
      pr.bind(4, proof->at);
      SWARM_RETURN_IF_ERROR(pr.run("store proof"));
    }
    return Status::Ok();
  };
  const Status st = body();
  if (!st.ok()) {
    exec("ROLLBACK");
    return st;
  }
  return exec("COMMIT");
}

Result<std::vector<ReputationEventRecord>> ReputationStore::events(const std::string& node_id) {
  Statement q(db_,
              "SELECT id, event, at, score_after, detail FROM reputation_events WHERE node_id = ?1 "
              "ORDER BY id");
  SWARM_RETURN_IF_ERROR(q.status("read events"));
  q.bind(1, node_id);
  std::vector<ReputationEventRecord> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    const auto event = event_from_name(q.text(1));
    if (!event) return Status::Corruption("reputation store: unknown event '" + q.text(1) + "'");
    out.push_back({q.integer(0), node_id, *event, q.real(2), q.real(3), q.text(4)});
  }
  if (rc != SQLITE_DONE)
    return Status::IOError(std::string("reputation store: read events: ") + sqlite3_errmsg(db_));
  return out;
}

Result<std::vector<FraudProof>> ReputationStore::proofs(const std::string& node_id) {
  Statement q(db_,
              "SELECT id, proof, reason, at FROM reputation_proofs WHERE node_id = ?1 ORDER BY id");
  SWARM_RETURN_IF_ERROR(q.status("read proofs"));
  q.bind(1, node_id);
  std::vector<FraudProof> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    out.push_back({q.integer(0), node_id, q.text(1), q.text(2), q.real(3)});
  if (rc != SQLITE_DONE)
    return Status::IOError(std::string("reputation store: read proofs: ") + sqlite3_errmsg(db_));
  return out;
}

}  // namespace swarm::trust
