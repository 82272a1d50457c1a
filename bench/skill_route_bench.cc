// Time to route one skill request (doc/skills.md, "Routing") with N provider
// records in the gateway's view, all of the skill asked for (the worst case:
// every record is a candidate): SkillGateway::route, which builds the offers
// from records and the gateway's measurements, ranks them with the pure rule
// and returns the best provider, as a request's first try does. Prints one JSON line per N: median and
// 99th percentile in microseconds (goal: under 1 ms at 1,000 records).
//   skill_route_bench [--calls C]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "api/skill_gateway.h"

using namespace swarm;

int main(int argc, char** argv) {
  int calls = 2000;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::string(argv[i]) == "--calls") calls = std::max(1, std::atoi(argv[i + 1]));
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u(0, 1);
  for (int n : {10, 100, 1000, 10000}) {
    std::vector<discovery::SkillRecord> records;
    for (int i = 0; i < n; ++i) {
      discovery::SkillRecord r;
      char id[41];
      std::snprintf(id, sizeof id, "%040d", i);
      r.node_id = id;
      r.addresses = {"10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":9100"};
      r.skill = "llama-3-8b-instruct";
      r.tasks = {"chat", "completions"};
      r.price_per_1k = 0.1 + u(rng);
      r.capacity = 1 + static_cast<int64_t>(u(rng) * 16);
      r.active = static_cast<int64_t>(u(rng) * static_cast<double>(r.capacity));
      r.tokens_per_second = 5 + 100 * u(rng);
      r.ttft_seconds = 0.05 + u(rng);
      r.warm = true;
      records.push_back(std::move(r));
    }
    SkillGatewayOptions o;
    o.seed = 7;
    SkillGateway gateway(o);
    gateway.set_records(records);
    SkillAsk ask;
    ask.prompt_tokens = 200;
    ask.output_tokens = 256;
    ask.max_price = 0.8;
    std::vector<double> us;
    us.reserve(static_cast<size_t>(calls));
    size_t chosen = 0;
    for (int c = 0; c < calls; ++c) {
      const auto t0 = std::chrono::steady_clock::now();
      // As a request does: the best provider not tried yet.
      const auto order = gateway.route("llama-3-8b-instruct", "chat", ask, {}, 1);
      const auto t1 = std::chrono::steady_clock::now();
      chosen += order.size();
      us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::printf(
        "{\"bench\":\"skill_route\",\"records\":%d,\"calls\":%d,\"median_us\":%.1f,"
        "\"p99_us\":%.1f,\"chosen_per_call\":%zu}\n",
        n, calls, us[us.size() / 2], us[us.size() * 99 / 100], chosen / static_cast<size_t>(calls));
  }
  return 0;
}
