// What the HTTP API does with API keys and credits (doc/trust.md, "Credits
// ledger"): reads the key a request carries, answers 401 and 402 as OpenAI
// does, and after a generation pays the nodes from the request's hold (or
// returns the hold when the request failed), reporting the cost in usage.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "api/api_error.h"
#include "engine/status.h"
#include "trust/ledger.h"
#include "trust/node_work.h"

namespace swarm {

// The key of `Authorization: Bearer KEY`, or nullopt when there is none.
std::optional<std::string> bearer_key(const httplib::Request& req);

// 401 invalid_api_key: no key given, or one the ledger does not know.
ApiError missing_key_error();
ApiError invalid_key_error(const std::string& key);
// 402 insufficient_quota, with the ledger's reason (balance and cost).
ApiError insufficient_quota_error(const std::string& reason, int64_t tokens, double price_per_1k);

// What a request cost: `cost` micro-credits in all, credits[i] earned by work[i].
struct Bill {
  int64_t cost = 0;
  std::vector<int64_t> credits;
  bool charged = false;  // from a hold (a ledger); else what it would have cost
};

// Closes the request's hold: settles `work` from it after a generation that
// ended well (`status` ok, cancelled or not: the nodes did the work), returns
// it whole after a failure. Without a hold, prices the work without charging.
// A ledger error is logged through `log` and leaves the hold to be released at
// the next start; the answer still goes out.
Bill close_hold(trust::Ledger* ledger, const std::optional<trust::Hold>& hold, const Status& status,
                const std::vector<NodeWork>& work, const std::function<void(const std::string&)>& log);

// usage.served_by: one object per node's work (node_id, address, layers
// "a:b", tokens, price_per_1k, credits).
nlohmann::ordered_json served_by_json(const std::vector<NodeWork>& work, const Bill& bill);

}  // namespace swarm
