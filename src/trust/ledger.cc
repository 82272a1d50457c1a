#include "trust/ledger.h"

#include <sodium.h>
#include <sqlite3.h>

#include <chrono>
#include <map>
#include <set>
#include <tuple>

#include "trust/credits.h"

namespace swarm::trust {
namespace {

// The tables (doc/trust.md, "Credits ledger"). Node totals are sums over
// entries, never a second copy that could drift from them.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS ledger_accounts(
  id INTEGER PRIMARY KEY,
  key_hash TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  balance INTEGER NOT NULL CHECK(balance >= 0),
  active INTEGER NOT NULL DEFAULT 1,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_grants(
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES ledger_accounts(id),
  amount INTEGER NOT NULL CHECK(amount >= 0),
  note TEXT NOT NULL,
  at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_holds(
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES ledger_accounts(id),
  request_id TEXT NOT NULL UNIQUE,
  amount INTEGER NOT NULL CHECK(amount >= 0),
  state TEXT NOT NULL CHECK(state IN ('open', 'settled', 'released')),
  charged INTEGER NOT NULL DEFAULT 0 CHECK(charged >= 0 AND charged <= amount),
  opened_ms INTEGER NOT NULL,
  closed_ms INTEGER,
  note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS ledger_holds_by_state ON ledger_holds(state);
CREATE TABLE IF NOT EXISTS ledger_entries(
  id INTEGER PRIMARY KEY,
  hold_id INTEGER NOT NULL REFERENCES ledger_holds(id),
  node TEXT NOT NULL,
  address TEXT NOT NULL,
  first_layer INTEGER NOT NULL,
  last_layer INTEGER NOT NULL,
  steps INTEGER NOT NULL,
  tokens INTEGER NOT NULL,
  price_per_1k INTEGER NOT NULL,
  credits INTEGER NOT NULL CHECK(credits >= 0),
  receipts TEXT NOT NULL,
  state TEXT NOT NULL CHECK(state IN ('pending', 'paid', 'forfeited')),
  settled_ms INTEGER NOT NULL,
  closed_ms INTEGER,
  UNIQUE(hold_id, node, first_layer, last_layer));
CREATE INDEX IF NOT EXISTS ledger_entries_by_node ON ledger_entries(node, state);
CREATE INDEX IF NOT EXISTS ledger_entries_by_state ON ledger_entries(state, settled_ms);
CREATE TABLE IF NOT EXISTS ledger_forfeits(
  id INTEGER PRIMARY KEY,
  node TEXT NOT NULL,
  amount INTEGER NOT NULL,
  reason TEXT NOT NULL,
  at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_forfeits_by_node ON ledger_forfeits(node);
)sql";

Status sql_error(sqlite3* db, const std::string& what) {
  return Status::IOError("ledger: " + what + ": " + sqlite3_errmsg(db));
}

// A prepared statement; bind() counts parameters from 1.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) s_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  template <typename... Args>
  Stmt& bind(const Args&... args) {
    int i = 0;
    (bind_one(++i, args), ...);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int step() { return s_ ? sqlite3_step(s_) : SQLITE_ERROR; }
  // Runs a statement that returns no rows.
  Status run(const std::string& what) {
    return step() == SQLITE_DONE ? Status::Ok() : sql_error(db_, what);
  }
  int64_t i64(int col) { return sqlite3_column_int64(s_, col); }
  std::string text(int col) {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t ? reinterpret_cast<const char*>(t) : "";
  }

 private:
  void bind_one(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void bind_one(int i, int v) { sqlite3_bind_int64(s_, i, v); }
  void bind_one(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bind_one(int i, const char* v) { sqlite3_bind_text(s_, i, v, -1, SQLITE_TRANSIENT); }

  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

// BEGIN IMMEDIATE (the write lock up front, so two writers never deadlock in
// an upgrade); rolled back unless commit() succeeded.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    begun_ = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Transaction() {
    if (begun_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status begun() const { return begun_ ? Status::Ok() : sql_error(db_, "begin"); }
  Status commit() {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
      return sql_error(db_, "commit");
    done_ = true;
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  bool begun_ = false, done_ = false;
};

int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Cuts `credits` in proportion so they add up to `cap` (largest remainders
// get the leftover micro-credits, earlier items first on ties).
void scale_to(std::vector<int64_t>& credits, int64_t total, int64_t cap) {
  std::vector<std::pair<__int128, size_t>> remainders;
  int64_t given = 0;
  for (size_t i = 0; i < credits.size(); ++i) {
    const __int128 p = static_cast<__int128>(credits[i]) * cap;
    credits[i] = static_cast<int64_t>(p / total);
    given += credits[i];
    remainders.push_back({p % total, i});
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t k = 0; given < cap && k < remainders.size(); ++k, ++given)
    ++credits[remainders[k].second];
}

}  // namespace

std::string key_hash(std::string_view key) {
  unsigned char h[crypto_generichash_BYTES];
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     nullptr, 0);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : h) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string Ledger::node_name(const NodeWork& work) {
  return work.node_id.empty() ? work.address : work.node_id;
}

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::string& path, LedgerOptions options) {
  if (sodium_init() < 0) return Status::Internal("libsodium failed to initialize");
  if (!options.now_ms) options.now_ms = system_now_ms;
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    Status st = Status::IOError("ledger " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return st;
  }
  std::unique_ptr<Ledger> ledger(new Ledger(db, std::move(options)));
  if (Status st = ledger->init(); !st.ok()) return st.annotate(path);
  return ledger;
}

Ledger::Ledger(sqlite3* db, LedgerOptions options) : db_(db), options_(std::move(options)) {}

Ledger::~Ledger() { sqlite3_close(db_); }

Status Ledger::init() {
  sqlite3_busy_timeout(db_, options_.busy_timeout_ms);
  // WAL: readers (swarm ledger) never block the gateway; FULL: a commit is on
  // disk before the answer that depends on it goes out.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON"}) {
    Stmt s(db_, pragma);
    const int rc = s.step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sql_error(db_, pragma);
  }
  if (sqlite3_exec(db_, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK)
    return sql_error(db_, "creating the ledger tables");
  if (!options_.recover_holds) return Status::Ok();
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  {
    Stmt count(db_, "SELECT COUNT(*) FROM ledger_holds WHERE state = 'open'");
    if (count.step() != SQLITE_ROW) return sql_error(db_, "counting open holds");
    recovered_holds_ = count.i64(0);
  }
  if (recovered_holds_ == 0) return Status::Ok();
  SWARM_RETURN_IF_ERROR(
      Stmt(db_,
           "UPDATE ledger_accounts SET balance = balance + (SELECT COALESCE(SUM(amount), 0) FROM "
           "ledger_holds h WHERE h.account_id = ledger_accounts.id AND h.state = 'open')")
          .run("returning open holds"));
  SWARM_RETURN_IF_ERROR(Stmt(db_,
                             "UPDATE ledger_holds SET state = 'released', closed_ms = ?, note = "
                             "'left open by a process that ended; released on open' WHERE state = 'open'")
                            .bind(now())
                            .run("releasing open holds"));
  return t.commit();
}

Result<bool> Ledger::add_account(std::string_view key, const std::string& name, int64_t credits) {
  if (credits < 0) return Status::InvalidArgument("credits must not be negative");
  const std::string hash = key_hash(key);
  std::lock_guard<std::mutex> lock(mu_);
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  Stmt find(db_, "SELECT id FROM ledger_accounts WHERE key_hash = ?");
  find.bind(hash);
  if (find.step() == SQLITE_ROW) {
    SWARM_RETURN_IF_ERROR(Stmt(db_, "UPDATE ledger_accounts SET name = ?, active = 1 WHERE id = ?")
                              .bind(name, find.i64(0))
                              .run("renaming an account"));
    SWARM_RETURN_IF_ERROR(t.commit());
    return false;
  }
  SWARM_RETURN_IF_ERROR(
      Stmt(db_, "INSERT INTO ledger_accounts(key_hash, name, balance, created_ms) VALUES (?, ?, ?, ?)")
          .bind(hash, name, credits, now())
          .run("adding an account"));
  const int64_t id = sqlite3_last_insert_rowid(db_);
  SWARM_RETURN_IF_ERROR(
      Stmt(db_, "INSERT INTO ledger_grants(account_id, amount, note, at_ms) VALUES (?, ?, ?, ?)")
          .bind(id, credits, "initial credits", now())
          .run("granting credits"));
  SWARM_RETURN_IF_ERROR(t.commit());
  return true;
}

Status Ledger::set_active_keys(const std::vector<std::string>& keys) {
  std::set<std::string> hashes;
  for (const std::string& k : keys) hashes.insert(key_hash(k));
  std::lock_guard<std::mutex> lock(mu_);
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  std::vector<std::pair<int64_t, bool>> changes;
  {
    Stmt s(db_, "SELECT id, key_hash, active FROM ledger_accounts");
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
      const bool want = hashes.count(s.text(1)) > 0;
      if (want != (s.i64(2) != 0)) changes.push_back({s.i64(0), want});
    }
    if (rc != SQLITE_DONE) return sql_error(db_, "listing accounts");
  }
  for (const auto& [id, active] : changes)
    SWARM_RETURN_IF_ERROR(Stmt(db_, "UPDATE ledger_accounts SET active = ? WHERE id = ?")
                              .bind(active ? 1 : 0, id)
                              .run("marking a key"));
  return t.commit();
}

Result<Account> Ledger::authorize(std::string_view key) {
  const std::string hash = key_hash(key);
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT id, name, balance FROM ledger_accounts WHERE key_hash = ? AND active = 1");
  s.bind(hash);
  const int rc = s.step();
  if (rc == SQLITE_DONE) return Status::NotFound("unknown API key");
  if (rc != SQLITE_ROW) return sql_error(db_, "looking up a key");
  return Account{s.i64(0), s.text(1), s.i64(2)};
}

Result<Hold> Ledger::reserve(const Account& account, int64_t max_cost, const std::string& request_id) {
  if (max_cost < 0) return Status::InvalidArgument("a hold must not be negative");
  std::lock_guard<std::mutex> lock(mu_);
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  Stmt s(db_, "SELECT balance FROM ledger_accounts WHERE id = ?");
  s.bind(account.id);
  if (s.step() != SQLITE_ROW) return Status::NotFound("unknown account " + std::to_string(account.id));
  const int64_t balance = s.i64(0);
  if (balance < max_cost)
    return Status::ResourceExhausted("insufficient balance: " + format_credits(balance) +
                                     " credits, the request may cost up to " +
                                     format_credits(max_cost) + " credits");
  SWARM_RETURN_IF_ERROR(Stmt(db_, "UPDATE ledger_accounts SET balance = balance - ? WHERE id = ?")
                            .bind(max_cost, account.id)
                            .run("taking a hold"));
  Stmt insert(db_,
              "INSERT INTO ledger_holds(account_id, request_id, amount, state, opened_ms) VALUES "
              "(?, ?, ?, 'open', ?)");
  if (insert.bind(account.id, request_id, max_cost, now()).step() != SQLITE_DONE) {
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE)
      return Status::InvalidArgument("request " + request_id + " already has a hold");
    return sql_error(db_, "recording a hold");
  }
  Hold hold{sqlite3_last_insert_rowid(db_), account.id, max_cost, request_id};
  SWARM_RETURN_IF_ERROR(t.commit());
  return hold;
}

namespace {

// Why hold `id` cannot be closed: it is not open.
Status not_open(sqlite3* db, int64_t id) {
  Stmt s(db, "SELECT state FROM ledger_holds WHERE id = ?");
  s.bind(id);
  if (s.step() != SQLITE_ROW) return Status::NotFound("no hold " + std::to_string(id));
  return Status::InvalidArgument("hold " + std::to_string(id) + " is already " + s.text(0) +
                                 ": it is paid or returned once");
}

}  // namespace

Result<Settlement> Ledger::settle(const Hold& hold, const std::vector<NodeWork>& work) {
  Settlement out;
  int64_t total = 0;
  for (const NodeWork& w : work) {
    auto c = work_credits(w);
    if (!c.ok()) return c.status();
    out.credits.push_back(*c);
    total += *c;  // each < 2^63 / 2^12; a request has few nodes
  }
  std::lock_guard<std::mutex> lock(mu_);
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  // The hold as stored, not as the caller remembers it.
  Stmt h(db_, "SELECT account_id, amount FROM ledger_holds WHERE id = ? AND state = 'open'");
  h.bind(hold.id);
  if (h.step() != SQLITE_ROW) return not_open(db_, hold.id);
  const int64_t account = h.i64(0), amount = h.i64(1);
  if (total > amount) {
    scale_to(out.credits, total, amount);
    out.capped = true;
    total = amount;
  }
  out.charged = total;
  out.returned = amount - total;
  SWARM_RETURN_IF_ERROR(
      Stmt(db_, "UPDATE ledger_holds SET state = 'settled', charged = ?, closed_ms = ? WHERE id = ?")
          .bind(total, now(), hold.id)
          .run("settling a hold"));
  SWARM_RETURN_IF_ERROR(Stmt(db_, "UPDATE ledger_accounts SET balance = balance + ? WHERE id = ?")
                            .bind(out.returned, account)
                            .run("returning the rest of a hold"));
  // One entry per node and layer range; a node met twice (work split by a
  // failover) is merged, its receipts listed in order.
  struct Merged {
    const NodeWork* first = nullptr;
    int64_t steps = 0, tokens = 0, credits = 0;
    std::string receipts;
  };
  std::map<std::tuple<std::string, int, int>, Merged> entries;
  for (size_t i = 0; i < work.size(); ++i) {
    const NodeWork& w = work[i];
    auto [it, fresh] = entries.try_emplace({node_name(w), w.first_layer, w.last_layer});
    Merged& m = it->second;
    if (fresh) m.first = &w;
    m.steps += w.steps;
    m.tokens += w.tokens;
    m.credits += out.credits[i];
    m.receipts += (fresh ? "" : ",") + w.receipts;
  }
  const int64_t at = now();
  for (const auto& [key, m] : entries) {
    auto price = to_micro(m.first->price_per_1k, "price_per_1k");
    SWARM_RETURN_IF_ERROR(price.status());
    SWARM_RETURN_IF_ERROR(
        Stmt(db_,
             "INSERT INTO ledger_entries(hold_id, node, address, first_layer, last_layer, steps, "
             "tokens, price_per_1k, credits, receipts, state, settled_ms) VALUES (?1, ?2, ?3, ?4, "
             "?5, ?6, ?7, ?8, ?9, ?10, CASE WHEN EXISTS (SELECT 1 FROM ledger_forfeits WHERE node "
             "= ?2) THEN 'forfeited' ELSE 'pending' END, ?11)")
            .bind(hold.id, std::get<0>(key), m.first->address, std::get<1>(key), std::get<2>(key),
                  m.steps, m.tokens, *price, m.credits, m.receipts, at)
            .run("recording a node's earnings"));
  }
  SWARM_RETURN_IF_ERROR(t.commit());
  return out;
}

Status Ledger::release(const Hold& hold) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  Stmt h(db_, "SELECT account_id, amount FROM ledger_holds WHERE id = ? AND state = 'open'");
  h.bind(hold.id);
  if (h.step() != SQLITE_ROW) return not_open(db_, hold.id);
  SWARM_RETURN_IF_ERROR(
      Stmt(db_, "UPDATE ledger_holds SET state = 'released', closed_ms = ? WHERE id = ?")
          .bind(now(), hold.id)
          .run("releasing a hold"));
  SWARM_RETURN_IF_ERROR(Stmt(db_, "UPDATE ledger_accounts SET balance = balance + ? WHERE id = ?")
                            .bind(h.i64(1), h.i64(0))
                            .run("returning a hold"));
  return t.commit();
}

Result<int64_t> Ledger::forfeit(const std::string& node, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  Stmt sum(db_,
           "SELECT COALESCE(SUM(credits), 0) FROM ledger_entries WHERE node = ? AND state = 'pending'");
  sum.bind(node);
  if (sum.step() != SQLITE_ROW) return sql_error(db_, "summing pending credits");
  const int64_t amount = sum.i64(0);
  SWARM_RETURN_IF_ERROR(Stmt(db_,
                             "UPDATE ledger_entries SET state = 'forfeited', closed_ms = ? WHERE "
                             "node = ? AND state = 'pending'")
                            .bind(now(), node)
                            .run("forfeiting"));
  SWARM_RETURN_IF_ERROR(
      Stmt(db_, "INSERT INTO ledger_forfeits(node, amount, reason, at_ms) VALUES (?, ?, ?, ?)")
          .bind(node, amount, reason, now())
          .run("recording a forfeit"));
  SWARM_RETURN_IF_ERROR(t.commit());
  return amount;
}

Result<int64_t> Ledger::pay_out(int64_t before_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction t(db_);
  SWARM_RETURN_IF_ERROR(t.begun());
  Stmt sum(db_,
           "SELECT COALESCE(SUM(credits), 0) FROM ledger_entries WHERE state = 'pending' AND "
           "settled_ms < ?");
  sum.bind(before_ms);
  if (sum.step() != SQLITE_ROW) return sql_error(db_, "summing pending credits");
  const int64_t amount = sum.i64(0);
  SWARM_RETURN_IF_ERROR(Stmt(db_,
                             "UPDATE ledger_entries SET state = 'paid', closed_ms = ? WHERE state "
                             "= 'pending' AND settled_ms < ?")
                            .bind(now(), before_ms)
                            .run("paying out"));
  SWARM_RETURN_IF_ERROR(t.commit());
  return amount;
}

Result<LedgerTotals> Ledger::totals() {
  std::lock_guard<std::mutex> lock(mu_);
  // One read transaction: the sums come from one snapshot.
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK)
    return sql_error(db_, "begin");
  Stmt s(db_,
         "SELECT (SELECT COALESCE(SUM(amount), 0) FROM ledger_grants),"
         " (SELECT COALESCE(SUM(balance), 0) FROM ledger_accounts),"
         " (SELECT COALESCE(SUM(amount), 0) FROM ledger_holds WHERE state = 'open'),"
         " (SELECT COUNT(*) FROM ledger_holds WHERE state = 'open'),"
         " (SELECT COALESCE(SUM(credits), 0) FROM ledger_entries WHERE state = 'pending'),"
         " (SELECT COALESCE(SUM(credits), 0) FROM ledger_entries WHERE state = 'paid'),"
         " (SELECT COALESCE(SUM(credits), 0) FROM ledger_entries WHERE state = 'forfeited'),"
         " (SELECT COUNT(*) FROM ledger_entries),"
         " (SELECT COUNT(*) FROM ledger_holds h WHERE h.state = 'settled' AND h.charged !="
         "   (SELECT COALESCE(SUM(credits), 0) FROM ledger_entries e WHERE e.hold_id = h.id))");
  const int rc = s.step();
  LedgerTotals t;
  if (rc == SQLITE_ROW) {
    t.granted = s.i64(0);
    t.balances = s.i64(1);
    t.held = s.i64(2);
    t.open_holds = s.i64(3);
    t.pending = s.i64(4);
    t.paid = s.i64(5);
    t.forfeited = s.i64(6);
    t.entries = s.i64(7);
    t.unbalanced_holds = s.i64(8);
  }
  Status st = rc == SQLITE_ROW ? Status::Ok() : sql_error(db_, "summing the ledger");
  sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  if (!st.ok()) return st;
  return t;
}

Result<std::vector<AccountView>> Ledger::accounts() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "SELECT a.id, a.name, a.key_hash, a.balance,"
         " (SELECT COALESCE(SUM(amount), 0) FROM ledger_holds WHERE account_id = a.id AND state = 'open'),"
         " (SELECT COALESCE(SUM(amount), 0) FROM ledger_grants WHERE account_id = a.id),"
         " (SELECT COALESCE(SUM(charged), 0) FROM ledger_holds WHERE account_id = a.id AND state = 'settled')"
         " FROM ledger_accounts a ORDER BY a.name, a.id");
  std::vector<AccountView> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back({s.i64(0), s.text(1), s.text(2).substr(0, 16), s.i64(3), s.i64(4), s.i64(5), s.i64(6)});
  if (rc != SQLITE_DONE) return sql_error(db_, "listing accounts");
  return out;
}

Result<std::vector<NodeEarnings>> Ledger::nodes() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "SELECT node,"
         " SUM(CASE state WHEN 'pending' THEN credits ELSE 0 END),"
         " SUM(CASE state WHEN 'paid' THEN credits ELSE 0 END),"
         " SUM(CASE state WHEN 'forfeited' THEN credits ELSE 0 END),"
         " SUM(tokens), COUNT(*) FROM ledger_entries GROUP BY node ORDER BY node");
  std::vector<NodeEarnings> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW)
    out.push_back({s.text(0), s.i64(1), s.i64(2), s.i64(3), s.i64(4), s.i64(5)});
  if (rc != SQLITE_DONE) return sql_error(db_, "listing nodes");
  return out;
}

Result<std::vector<HistoryEntry>> Ledger::history(const HistoryFilter& filter) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "SELECT e.id, e.hold_id, e.settled_ms, h.request_id, a.name, e.node, e.address, e.state,"
         " e.receipts, e.first_layer, e.last_layer, e.steps, e.tokens, e.price_per_1k, e.credits"
         " FROM ledger_entries e JOIN ledger_holds h ON h.id = e.hold_id"
         " JOIN ledger_accounts a ON a.id = h.account_id"
         " WHERE (?1 = '' OR a.name = ?1) AND (?2 = '' OR e.node = ?2)"
         " ORDER BY e.id DESC LIMIT ?3");
  s.bind(filter.account_name, filter.node, static_cast<int64_t>(filter.limit));
  std::vector<HistoryEntry> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    HistoryEntry e;
    e.id = s.i64(0);
    e.hold = s.i64(1);
    e.at_ms = s.i64(2);
    e.request_id = s.text(3);
    e.account_name = s.text(4);
    e.node = s.text(5);
    e.address = s.text(6);
    e.state = s.text(7);
    e.receipts = s.text(8);
    e.first_layer = static_cast<int>(s.i64(9));
    e.last_layer = static_cast<int>(s.i64(10));
    e.steps = s.i64(11);
    e.tokens = s.i64(12);
    e.price_per_1k = s.i64(13);
    e.credits = s.i64(14);
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return sql_error(db_, "reading the history");
  return out;
}

}  // namespace swarm::trust
