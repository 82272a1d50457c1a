// The credits ledger (doc/trust.md, "Credits ledger"): requesters' balances
// under their API keys, the holds that requests in progress keep on them, and
// what nodes earn for the work they did, each earning traced to the receipts
// (signed commitments) it pays for. One SQLite file, shared with other tables
// of the gateway; every table here is named ledger_*.
//
// A request is charged in three moves, each one transaction:
//   reserve  the most it may cost leaves the balance into a hold;
//   settle   its actual cost (never above the hold) is split into the nodes'
//            pending earnings, one entry per node; the rest returns to the balance;
//   release  (a failed request) the whole hold returns.
// A hold can be closed once: a second settle or release is refused, so no work is
// paid twice. Holds still open when a gateway opens the file were left by a
// process that died: they are released (nothing is charged for requests that
// never finished). Pending earnings become paid after a hold period (pay_out)
// unless a proven fraud forfeits them first (forfeit).
//
// Amounts are micro-credits (trust/credits.h). At every commit
//   sum(balances) + sum(open holds) + sum(nodes' pending + paid + forfeited)
//     == sum(grants)
// exactly; totals() checks it.
//
// Thread-safe: one connection, one transaction at a time. Other processes may
// open the same file (WAL; they wait up to busy_timeout for a lock).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "trust/node_work.h"

struct sqlite3;

namespace swarm::trust {

struct LedgerOptions {
  // Release the holds left open by a process that died. The gateway does; a
  // viewer (swarm ledger) must not, as a gateway may be running.
  bool recover_holds = true;
  // Milliseconds since the Unix epoch; tests move it.
  std::function<int64_t()> now_ms;
  int busy_timeout_ms = 10000;
};

struct Account {
  int64_t id = 0;
  std::string name;
  int64_t balance = 0;  // micro-credits, holds excluded
};

struct Hold {
  int64_t id = 0;
  int64_t account = 0;
  int64_t amount = 0;  // micro-credits taken from the balance
  std::string request_id;
};

// What a settle did: `charged` left the requester for good, `returned` went
// back to the balance; credits[i] is what work[i] earned (entries merged by
// node and layers get the same number). When the work cost more than the hold
// (replays after failovers on a dearer route), the nodes' credits are cut in
// proportion so they add up to the hold: a requester never pays more than the
// hold it agreed to.
struct Settlement {
  int64_t charged = 0, returned = 0;
  std::vector<int64_t> credits;
  bool capped = false;
};

struct AccountView {
  int64_t id = 0;
  std::string name;
  std::string key_hash;  // hex, first 16 digits
  int64_t balance = 0, held = 0, granted = 0, charged = 0;
};

struct NodeEarnings {
  std::string node;  // node id, or HOST:PORT for a node without identity
  int64_t pending = 0, paid = 0, forfeited = 0, tokens = 0, entries = 0;
};

struct HistoryEntry {
  int64_t id = 0, hold = 0, at_ms = 0;
  std::string request_id, account_name, node, address, state, receipts;
  int first_layer = 0, last_layer = 0;
  int64_t steps = 0, tokens = 0, price_per_1k = 0, credits = 0;  // price in micro-credits
};

struct HistoryFilter {
  int limit = 20;           // newest first
  std::string account_name; // "" = all
  std::string node;         // "" = all
};

struct LedgerTotals {
  int64_t granted = 0, balances = 0, held = 0, pending = 0, paid = 0, forfeited = 0;
  int64_t open_holds = 0, entries = 0;
  // Settled holds whose charge differs from the sum of their entries (0 unless
  // something was paid twice or lost).
  int64_t unbalanced_holds = 0;
  // Whether every credit granted is somewhere: the invariant above, and each
  // settled hold's charge is exactly what its entries paid.
  bool conserved() const {
    return balances + held + pending + paid + forfeited == granted && unbalanced_holds == 0;
  }
};

// The key's BLAKE2b-256 (libsodium crypto_generichash), hex: all the ledger keeps of it.
std::string key_hash(std::string_view key);

class Ledger {
 public:
  // Creates the tables if missing. IOError when the file cannot be opened.
  static Result<std::unique_ptr<Ledger>> Open(const std::string& path, LedgerOptions options = {});
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Holds released on open (left by a process that died).
  int64_t recovered_holds() const { return recovered_holds_; }

  // A new account for `key` with `credits` granted once; an existing key keeps
  // its balance (only its name follows). Returns whether it was new.
  Result<bool> add_account(std::string_view key, const std::string& name, int64_t credits);
  // Only the accounts of `keys` may be authorized from now on (the others
  // keep their balances, for when their key comes back).
  Status set_active_keys(const std::vector<std::string>& keys);
  // NotFound ("unknown API key") for a key without an active account.
  Result<Account> authorize(std::string_view key);
  // Takes `max_cost` into a hold for `request_id` (unique), or
  // ResourceExhausted naming the balance and the cost when it does not fit.
  Result<Hold> reserve(const Account& account, int64_t max_cost, const std::string& request_id);
  // Pays `work` from `hold` in one transaction (see Settlement). Refused
  // (InvalidArgument) if the hold is not open: settled or released already.
  Result<Settlement> settle(const Hold& hold, const std::vector<NodeWork>& work);
  // Returns the whole hold to the balance; refused if the hold is not open.
  Status release(const Hold& hold);
  // A proven fraud: every pending (unpaid) credit of `node` is forfeited, and
  // so is what it earns in requests settled later (a node is excluded for good
  // once proven to cheat; requests in flight may still settle). Returns the
  // micro-credits forfeited now.
  Result<int64_t> forfeit(const std::string& node, const std::string& reason);
  // Pending entries settled before `before_ms` become paid; returns the
  // micro-credits paid.
  Result<int64_t> pay_out(int64_t before_ms);

  Result<LedgerTotals> totals();
  Result<std::vector<AccountView>> accounts();
  Result<std::vector<NodeEarnings>> nodes();
  Result<std::vector<HistoryEntry>> history(const HistoryFilter& filter);

  // What an entry's node is called: its node id, or its HOST:PORT for a node
  // without identity (as reputation and exclusions name it).
  static std::string node_name(const NodeWork& work);

 private:
  Ledger(sqlite3* db, LedgerOptions options);
  Status init();
  int64_t now() const { return options_.now_ms(); }

  sqlite3* db_;
  LedgerOptions options_;
  std::mutex mu_;
  int64_t recovered_holds_ = 0;
};

}  // namespace swarm::trust
