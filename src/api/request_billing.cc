#include "api/request_billing.h"

#include <cstdio>

#include "trust/api_keys.h"
#include "trust/credits.h"

namespace swarm {

std::optional<std::string> bearer_key(const httplib::Request& req) {
  if (!req.has_header("Authorization")) return std::nullopt;
  const std::string value = req.get_header_value("Authorization");
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(value[i])) != kScheme[i]) return std::nullopt;
  size_t start = kScheme.size();
  while (start < value.size() && value[start] == ' ') ++start;
  size_t end = value.size();
  while (end > start && value[end - 1] == ' ') --end;
  if (start == end) return std::nullopt;
  return value.substr(start, end - start);
}

ApiError missing_key_error() {
  return ApiError{401,
                  "You didn't provide an API key. You need to provide your API key in an "
                  "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                  "invalid_request_error", "", "invalid_api_key"};
}

ApiError invalid_key_error(const std::string& key) {
  // As OpenAI does: a few characters of each end, never the whole key.
  std::string shown = key.size() >= 12 && key.size() <= trust::kMaxKeyLength
                          ? key.substr(0, 4) + "****" + key.substr(key.size() - 4)
                          : "****";
  for (char& c : shown)
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return ApiError{401, "Incorrect API key provided: " + shown + ".", "invalid_request_error", "",
                  "invalid_api_key"};
}

ApiError insufficient_quota_error(const std::string& reason, int64_t tokens, double price_per_1k) {
  char detail[160];
  std::snprintf(detail, sizeof detail,
                " (%lld tokens of prompt and max_tokens at %g credits per 1,000 on the route)",
                static_cast<long long>(tokens), price_per_1k);
  return ApiError{402,
                  "You exceeded your current quota: " + reason + detail +
                      ". Ask for a smaller max_tokens or add credits to your key.",
                  "insufficient_quota", "", "insufficient_quota"};
}

Bill close_hold(trust::Ledger* ledger, const std::optional<trust::Hold>& hold, const Status& status,
                const std::vector<NodeWork>& work,
                const std::function<void(const std::string&)>& log) {
  Bill bill;
  if (ledger && hold) {
    if (!status.ok()) {
      if (Status st = ledger->release(*hold); !st.ok() && log)
        log("ledger: releasing the hold of " + hold->request_id + ": " + st.ToString());
      bill.credits.assign(work.size(), 0);
      bill.charged = true;
      return bill;
    }
    auto settled = ledger->settle(*hold, work);
    if (settled.ok()) {
      bill.cost = settled->charged;
      bill.credits = settled->credits;
      bill.charged = true;
      return bill;
    }
    if (log) log("ledger: settling " + hold->request_id + ": " + settled.status().ToString());
    if (Status st = ledger->release(*hold); !st.ok() && log)
      log("ledger: releasing the hold of " + hold->request_id + ": " + st.ToString());
    bill.credits.assign(work.size(), 0);
    bill.charged = true;
    return bill;
  }
  for (const NodeWork& w : work) {
    auto c = trust::work_credits(w);
    bill.credits.push_back(c.ok() ? *c : 0);
    bill.cost += bill.credits.back();
  }
  return bill;
}

nlohmann::ordered_json served_by_json(const std::vector<NodeWork>& work, const Bill& bill) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < work.size(); ++i) {
    const NodeWork& w = work[i];
    out.push_back({{"node_id", w.node_id},
                   {"address", w.address},
                   {"layers", std::to_string(w.first_layer) + ":" + std::to_string(w.last_layer)},
                   {"tokens", w.tokens},
                   {"price_per_1k", w.price_per_1k},
                   {"credits", trust::to_credits(i < bill.credits.size() ? bill.credits[i] : 0)}});
  }
  return out;
}

}  // namespace swarm
