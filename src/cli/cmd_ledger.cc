// swarm ledger [--trust-db PATH] [--history N] [--key NAME] [--node ID] [--json]
//              [--pay-out-after S] [--forfeit NODE --reason TEXT]
// The gateway's credits ledger (doc/trust.md, "Credits ledger"): each API key's
// balance, what each node earned (pending, paid, forfeited), the latest
// entries (each traced to its receipts), and whether every credit granted is
// accounted for. Safe while the gateway runs: it reads a snapshot and never
// releases the gateway's holds. --pay-out-after and --forfeit change the
// ledger, each in one transaction, before it is shown.
#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "trust/credits.h"
#include "trust/ledger.h"

namespace swarm::cli {
namespace {

using OJson = nlohmann::ordered_json;
using trust::format_credits;

struct LedgerFlags {
  std::string db = "swarm-gateway.db", key, node, forfeit, reason;
  int history = 20;
  double pay_out_after_s = -1;
  bool json = false;
};

std::string utc(int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

template <typename T>
T must(Result<T> r) {
  if (!r.ok()) fail(r.status().message());
  return std::move(*r);
}

void run(const LedgerFlags& o) {
  struct stat st;
  if (::stat(o.db.c_str(), &st) != 0) fail("no ledger at " + o.db + " (--trust-db)");
  trust::LedgerOptions lo;
  lo.recover_holds = false;  // a gateway may be running: its holds are its own
  auto opened = trust::Ledger::Open(o.db, lo);
  if (!opened.ok()) fail(opened.status().message());
  trust::Ledger& ledger = **opened;

  OJson actions = OJson::array();
  if (o.pay_out_after_s >= 0) {
    const int64_t before =
        static_cast<int64_t>(std::time(nullptr)) * 1000 - static_cast<int64_t>(o.pay_out_after_s * 1000);
    const int64_t paid = must(ledger.pay_out(before));
    actions.push_back({{"pay_out_micro", paid}});
    if (!o.json) std::printf("paid out %s credits\n", format_credits(paid).c_str());
  }
  if (!o.forfeit.empty()) {
    const int64_t lost = must(ledger.forfeit(o.forfeit, o.reason));
    actions.push_back({{"forfeit", o.forfeit}, {"forfeited_micro", lost}});
    if (!o.json)
      std::printf("node %s forfeits %s credits\n", o.forfeit.c_str(), format_credits(lost).c_str());
  }

  const trust::LedgerTotals t = must(ledger.totals());
  const auto accounts = must(ledger.accounts());
  const auto nodes = must(ledger.nodes());
  trust::HistoryFilter filter;
  filter.limit = o.history;
  filter.account_name = o.key;
  filter.node = o.node;
  const auto history = must(ledger.history(filter));

  if (o.json) {
    OJson out = {{"db", o.db},
                 {"conserved", t.conserved()},
                 {"totals",
                  {{"granted_micro", t.granted},
                   {"balances_micro", t.balances},
                   {"held_micro", t.held},
                   {"open_holds", t.open_holds},
                   {"pending_micro", t.pending},
                   {"paid_micro", t.paid},
                   {"forfeited_micro", t.forfeited},
                   {"entries", t.entries},
                   {"unbalanced_holds", t.unbalanced_holds}}},
                 {"accounts", OJson::array()},
                 {"nodes", OJson::array()},
                 {"history", OJson::array()}};
    if (!actions.empty()) out["actions"] = actions;
    for (const auto& a : accounts)
      out["accounts"].push_back({{"name", a.name},
                                 {"key_hash", a.key_hash},
                                 {"balance_micro", a.balance},
                                 {"held_micro", a.held},
                                 {"charged_micro", a.charged},
                                 {"granted_micro", a.granted}});
    for (const auto& n : nodes)
      out["nodes"].push_back({{"node", n.node},
                              {"pending_micro", n.pending},
                              {"paid_micro", n.paid},
                              {"forfeited_micro", n.forfeited},
                              {"tokens", n.tokens},
                              {"entries", n.entries}});
    for (const auto& e : history)
      out["history"].push_back({{"id", e.id},
                                {"at", utc(e.at_ms)},
                                {"request_id", e.request_id},
                                {"hold", e.hold},
                                {"key", e.account_name},
                                {"node", e.node},
                                {"address", e.address},
                                {"layers", std::to_string(e.first_layer) + ":" + std::to_string(e.last_layer)},
                                {"steps", e.steps},
                                {"tokens", e.tokens},
                                {"price_per_1k_micro", e.price_per_1k},
                                {"credits_micro", e.credits},
                                {"state", e.state},
                                {"receipts", e.receipts}});
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }

  std::printf("ledger %s: %s credits granted = %s in balances + %s held by %lld open request(s) + "
              "%s pending + %s paid + %s forfeited: %s\n",
              o.db.c_str(), format_credits(t.granted).c_str(), format_credits(t.balances).c_str(),
              format_credits(t.held).c_str(), static_cast<long long>(t.open_holds),
              format_credits(t.pending).c_str(), format_credits(t.paid).c_str(),
              format_credits(t.forfeited).c_str(), t.conserved() ? "conserved" : "NOT CONSERVED");
  std::printf("\nkeys (%zu):\n", accounts.size());
  for (const auto& a : accounts)
    std::printf("  %-20s balance %-14s held %-12s charged %-14s granted %-14s key %s...\n",
                a.name.c_str(), format_credits(a.balance).c_str(), format_credits(a.held).c_str(),
                format_credits(a.charged).c_str(), format_credits(a.granted).c_str(),
                a.key_hash.c_str());
  std::printf("\nnodes (%zu):\n", nodes.size());
  for (const auto& n : nodes)
    std::printf("  %-40s pending %-12s paid %-12s forfeited %-12s %lld tokens in %lld entries\n",
                n.node.c_str(), format_credits(n.pending).c_str(), format_credits(n.paid).c_str(),
                format_credits(n.forfeited).c_str(), static_cast<long long>(n.tokens),
                static_cast<long long>(n.entries));
  std::printf("\nhistory (newest %d%s%s):\n", o.history,
              o.key.empty() ? "" : (", key " + o.key).c_str(),
              o.node.empty() ? "" : (", node " + o.node).c_str());
  for (const auto& e : history)
    std::printf("  %s  %s  key %s  node %s [%d,%d)  %lld tokens  %s credits  %s  receipts %s\n",
                utc(e.at_ms).c_str(), e.request_id.c_str(), e.account_name.c_str(), e.node.c_str(),
                e.first_layer, e.last_layer, static_cast<long long>(e.tokens),
                format_credits(e.credits).c_str(), e.state.c_str(),
                e.receipts.substr(0, 16).c_str());
}

}  // namespace

void register_ledger(CLI::App& app) {
  auto o = std::make_shared<LedgerFlags>();
  CLI::App* cmd = app.add_subcommand("ledger", "Show the gateway's credits ledger: balances, node earnings, history");
  cmd->add_option("--trust-db", o->db, "The gateway's SQLite file (default swarm-gateway.db)");
  cmd->add_option("--history", o->history, "Entries to show, newest first (default 20)")
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--key", o->key, "Only the history of the API key of this NAME");
  cmd->add_option("--node", o->node, "Only the history of this node (its id, or HOST:PORT for a node without identity)");
  cmd->add_flag("--json", o->json, "One JSON object (amounts in micro-credits, exact)");
  cmd->add_option("--pay-out-after", o->pay_out_after_s,
                  "First pay out pending earnings settled more than S seconds ago")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--forfeit", o->forfeit, "First forfeit this node's unpaid credits (proven fraud)");
  cmd->add_option("--reason", o->reason, "Why, recorded with --forfeit");
  cmd->callback([o] {
    if (!o->forfeit.empty() && o->reason.empty()) fail("--forfeit needs --reason");
    run(*o);
  });
}

}  // namespace swarm::cli
