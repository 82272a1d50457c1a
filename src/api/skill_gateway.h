// The gateway's skills market (doc/skills.md): what the DHT's skill records
// offer, and each request for a skill answered through the provider that
// routing::rank_skill_offers picks, with failover:
//
// - a provider that fails before answering (unreachable, 5xx, busy) is left
//   for the next one at once;
// - a stream cut off part way continues exactly on another provider of the
//   same weights when both run our engine and the request is greedy (the
//   tokens so far are replayed: doc/http-api.md, "Resuming a completion
//   elsewhere"); otherwise it ends with an error event;
// - what the gateway measures of each provider (time to first token, speed,
//   failures) feeds the next choices;
// - the answer's usage says which provider served it, at what price and cost.
//
// The provider's own errors for a bad request (4xx) reach the client as they are.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "api/api_error.h"
#include "api/metric_families.h"
#include "api/skill_stream.h"
#include "api/upstream_call.h"
#include "discovery/skill_record.h"
#include "routing/skill_route.h"
#include "trust/ledger.h"

namespace swarm {

struct SkillGatewayOptions {
  double seconds_value = 0.01;     // credits a second of waiting is worth (routing)
  double reputation_floor = 0.2;
  double explore = 0.05;
  int default_output_tokens = 256;  // expected output of a request without max_tokens
  int max_attempts = 4;             // providers tried for one request, resumes included
  UpstreamTimeouts timeouts;
  // A provider's reputation in [0, 1], negative when unknown; may be empty.
  std::function<double(const std::string& node_id)> reputation;
  std::function<void(const std::string&)> log;  // one line per request and failover; may be empty
  uint64_t seed = 0;  // exploration draws; 0: from the OS
};

// Who pays for a skill request (a gateway with --api-keys): the most it may
// cost is held from the account's balance before a provider is called, and
// what it cost at the serving provider's price is paid to that provider when
// it ends (doc/skills.md, "Usage and payment").
struct SkillBilling {
  trust::Ledger* ledger = nullptr;  // null: nothing is charged
  trust::Account account;           // id 0: never charged (an --api-key key)
};

// One provider as the gateway sees it now (for /metrics and tests).
struct SkillProviderView {
  std::string skill, node_id, address;
  double price = 0;  // per 1000 tokens, as announced
  ProviderObservations seen;
  int64_t served = 0;  // requests it answered for this gateway
  int64_t failed = 0;  // requests it failed (unreachable, 5xx, busy, cut off)
};

class SkillGateway {
 public:
  using Clock = std::chrono::steady_clock;

  explicit SkillGateway(SkillGatewayOptions options);

  // Replaces the view with these records (every skill's providers, e.g. from
  // the DHT); measurements of providers still present are kept.
  void set_records(std::vector<discovery::SkillRecord> records);
  // Whether some provider announces `skill`.
  bool serves(const std::string& skill) const;
  // /v1/models entries, one per skill: providers, lowest price, tasks.
  std::vector<nlohmann::ordered_json> model_entries(int64_t created) const;
  std::vector<SkillProviderView> providers() const;
  // For /metrics (doc/metrics.md, "Skills"): providers per skill, requests
  // per provider and outcome, its measured speed and load, failovers and
  // exact resumes.
  MetricFamilies metrics() const;

  // The first `limit` providers of `skill` in the order the routing rule
  // ranks them for `ask` (doc/skills.md, "Routing"), leaving out the node ids
  // in `tried` and those `admit` refuses (empty: all admitted).
  using Admit = std::function<bool(const discovery::SkillRecord&)>;
  std::vector<discovery::SkillRecord> route(const std::string& skill, std::string_view task,
                                            const SkillAsk& ask,
                                            const std::vector<std::string>& tried = {},
                                            size_t limit = SIZE_MAX, const Admit& admit = {});
  // The highest price (per 1000 tokens; per image for images) among the
  // providers `ask` may go to; 0 when there are none.
  double highest_price(const std::string& skill, std::string_view task, const SkillAsk& ask);

  // Answers a POST of `task` (discovery::kTask*) whose parsed body names a
  // skill this gateway serves.
  void handle(const httplib::Request& req, httplib::Response& res, std::string_view task,
              const nlohmann::json& body, const SkillBilling& billing = {});

 private:
  struct Provider {
    discovery::SkillRecord record;
    SkillHistory history;
    int64_t served = 0, failed = 0;
  };
  struct Attempt;  // one request's state across providers (skill_gateway.cc)

  // Reads the request into `a` (the error a client gets for a bad gateway field).
  std::optional<ApiError> read_request(const httplib::Request& req, std::string_view task,
                                       const nlohmann::json& body, Attempt& a) const;
  // Holds the most it may cost from the payer's credits (402 when short).
  std::optional<ApiError> reserve(const SkillBilling& billing, Attempt& a);
  // Starts `a` on the best provider not tried yet (with `resume`, only
  // engine providers of the same weights); false when none is left.
  bool start_next(Attempt& a, const nlohmann::json* resume);
  // A whole answer (or the provider's refusal), with the gateway's usage.
  void answer_whole(Attempt& a, httplib::Response& res);
  // Streams the provider's events to the client until done; a cut-off
  // stream resumes on another engine provider when the request allows it.
  bool answer_stream(Attempt& a, SkillStream& stream, httplib::DataSink& sink);
  double seconds_now() const;
  void started(const std::string& key);
  void ended(const std::string& key, bool ok, double ttft_s, double tokens_per_second);
  void log(const std::string& line) const;

  const SkillGatewayOptions options_;
  const Clock::time_point epoch_ = Clock::now();
  mutable std::mutex mu_;  // guards what follows
  std::map<std::string, Provider> providers_;  // by skill + "/" + node id
  std::mt19937_64 rng_;
  int64_t failovers_ = 0;  // requests moved to another provider
  int64_t resumes_ = 0;    // of them, streams continued exactly from their tokens
  std::vector<SkillOffer> offers_;          // route()'s scratch
  std::vector<const Provider*> offer_of_;  // the provider of offers_[i]
};

}  // namespace swarm
