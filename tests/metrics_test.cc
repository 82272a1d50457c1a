// GET /metrics of `swarm serve`, `swarm gateway` and `swarm node
// --metrics-listen`, read with a real Prometheus parser (Debian's
// python3-prometheus-client): the text parses, every family has its type, and
// the counters moved by what the test's requests did (doc/metrics.md).
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "swarm_harness.h"

namespace swarm::testing {
namespace {

using nlohmann::json;

// Debian's interpreter: python3-prometheus-client installs for it, not for
// another python3 earlier on PATH.
constexpr const char* kPython = "/usr/bin/python3";

// Flattens what the parser reads into {"types": {family: type}, "samples":
// {"name{k=\"v\",...}": value}}, labels sorted by name.
constexpr const char* kParse = R"(
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {"types": {}, "samples": {}}
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    out["types"][f.name] = f.type
    for s in f.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        out["samples"][s.name + "{" + labels + "}"] = s.value
print(json.dumps(out))
)";

bool have_parser() {
  return std::system(
             (std::string(kPython) + " -c 'import prometheus_client.parser' >/dev/null 2>&1")
                 .c_str()) == 0;
}

class MetricsTest : public SwarmHarness {
 protected:
  void SetUp() override {
    SwarmHarness::SetUp();
    if (!have_parser())
      GTEST_SKIP() << "needs python3-prometheus-client (scripts/install-deps.sh --tests) for "
                      "/usr/bin/python3";
  }

  // GET /metrics on 127.0.0.1:`port`, parsed: {"types", "samples"} as kParse
  // writes them.
  json scrape(int port) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    auto res = c.Get("/metrics");
    if (!res) {
      ADD_FAILURE() << "no answer from /metrics on port " << port;
      return json{{"types", json::object()}, {"samples", json::object()}};
    }
    EXPECT_EQ(res->status, 200);
    EXPECT_TRUE(res->get_header_value("Content-Type").starts_with("text/plain; version=0.0.4"))
        << res->get_header_value("Content-Type");
    const std::string text_path = dir_ + "/metrics.txt", script = dir_ + "/parse.py";
    {
      std::ofstream(text_path) << res->body;
      std::ofstream(script) << kParse;
    }
    const std::string cmd =
        std::string(kPython) + " " + shell_quote(script) + " " + shell_quote(text_path) + " 2>&1";
    std::string out;
    if (std::FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[4096];
      for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
      ::pclose(p);
    }
    json parsed = json::parse(out, nullptr, false);
    if (parsed.is_discarded() || !parsed.contains("samples")) {
      ADD_FAILURE() << "the Prometheus parser rejects /metrics: " << out << "\n" << res->body;
      return json{{"types", json::object()}, {"samples", json::object()}};
    }
    return parsed;
  }

  // A sample's value; NaN when the scrape has no such sample.
  static double value(const json& m, const std::string& sample) {
    const json& s = m["samples"];
    return s.contains(sample) ? s[sample].get<double>() : std::nan("");
  }

  // The sum of every sample called `name` (any labels).
  static double sum_of(const json& m, const std::string& name) {
    double total = 0;
    for (const auto& [key, v] : m["samples"].items())
      if (key.substr(0, key.find('{')) == name) total += v.get<double>();
    return total;
  }

  std::vector<std::unique_ptr<ChildProcess>> serves_;
};

// A greedy completion of exactly `n` tokens (ignore_eos) on 127.0.0.1:`port`:
// its usage object.
json usage_of_completion(int port, const std::string& prompt, int n, bool stream = false) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  json body = {{"model", "tiny"},  {"prompt", prompt},   {"max_tokens", n},
               {"temperature", 0}, {"ignore_eos", true}, {"stream", stream}};
  if (stream) body["stream_options"] = {{"include_usage", true}};
  auto res = c.Post("/v1/completions", body.dump(), "application/json");
  EXPECT_TRUE(res && res->status == 200) << (res ? res->body : "no answer");
  if (!res || res->status != 200) return json::object();
  if (!stream) return json::parse(res->body)["usage"];
  // The usage chunk is the last event before [DONE].
  json usage = json::object();
  std::stringstream events(res->body);
  for (std::string line; std::getline(events, line);)
    if (line.starts_with("data: {")) {
      const json e = json::parse(line.substr(6), nullptr, false);
      if (!e.is_discarded() && e.contains("usage") && e["usage"].is_object()) usage = e["usage"];
    }
  EXPECT_FALSE(usage.empty()) << res->body;
  return usage;
}

TEST_F(MetricsTest, ServeCountsRequestsTokensAndLatencies) {
  serves_.push_back(std::make_unique<ChildProcess>(
      std::vector<std::string>{"serve", "-m", model_, "--listen", "127.0.0.1:0", "--model-name",
                               "tiny", "-t", "1", "-c", "128", "--kv-memory", "16M"},
      dir_ + "/serve.err"));
  ChildProcess* serve = serves_.back().get();
  ASSERT_TRUE(serve->ok()) << read_file(dir_ + "/serve.err");
  const int port = serve->port();

  // Before any request: the families exist, at zero.
  json m = scrape(port);
  EXPECT_EQ(value(m, "swarm_completion_tokens_total{}"), 0);
  EXPECT_EQ(value(m, "swarm_requests_in_flight{}"), 0);
  EXPECT_EQ(m["types"].value("swarm_time_to_first_token_seconds", ""), "histogram");
  EXPECT_EQ(m["types"].value("swarm_completion_tokens", ""), "counter");  // the parser drops _total

  int prompt = 0, completion = 0;
  for (const auto& [text, n, stream] :
       {std::tuple{kPrompts[0], 7, false}, std::tuple{kPrompts[1], 5, true}}) {
    const json u = usage_of_completion(port, text, n, stream);
    EXPECT_EQ(u.value("completion_tokens", 0), n) << u.dump();
    prompt += u.value("prompt_tokens", 0);
    completion += u.value("completion_tokens", 0);
  }
  // One the API refuses: a prompt that is not text or tokens.
  httplib::Client c("127.0.0.1", port);
  auto refused = c.Post("/v1/completions", R"({"model":"tiny","prompt":5})", "application/json");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400) << refused->body;

  // Requests are counted once their answer is written, each on its own connection's
  // thread: a client may read the whole stream before the server has counted it, so
  // wait for every one, not only the last sent.
  ASSERT_TRUE(eventually([&] {
    m = scrape(port);
    return value(m, R"(swarm_http_requests_total{code="400",endpoint="/v1/completions"})") == 1 &&
           value(m, R"(swarm_http_requests_total{code="200",endpoint="/v1/completions"})") >= 2;
  })) << m.dump(1);
  EXPECT_EQ(value(m, R"(swarm_http_requests_total{code="200",endpoint="/v1/completions"})"), 2);
  EXPECT_EQ(value(m, "swarm_prompt_tokens_total{}"), prompt);
  EXPECT_EQ(value(m, "swarm_completion_tokens_total{}"), completion);
  EXPECT_EQ(value(m, R"(swarm_completions_total{finish_reason="length"})"), 2);
  EXPECT_EQ(value(m, "swarm_time_to_first_token_seconds_count{}"), 2);
  EXPECT_EQ(value(m, R"(swarm_time_to_first_token_seconds_bucket{le="+Inf"})"), 2);
  EXPECT_GT(value(m, "swarm_time_to_first_token_seconds_sum{}"), 0);
  EXPECT_EQ(value(m, "swarm_time_per_output_token_seconds_count{}"), completion - 2);
  EXPECT_EQ(value(m, "swarm_requests_in_flight{}"), 0);
  EXPECT_EQ(value(m, "swarm_kv_used_bytes{}"), 0);  // both requests are done
  EXPECT_EQ(value(m, "swarm_kv_free_bytes{}"), 16 << 20);
  EXPECT_GE(value(m, "swarm_batch_iterations_total{}"), completion);
  EXPECT_GE(value(m, "swarm_http_threads{}"), 1);
  EXPECT_EQ(m["types"].value("swarm_http_refused_connections", ""), "counter");
}

TEST_F(MetricsTest, GatewayAndNodesCountTheSameWork) {
  const auto a = keygen("a"), b = keygen("b");
  const int ma = free_port(), mb = free_port();
  ChildProcess* na = start_node({"--layers", "0:2", "--identity", a.path, "--metrics-listen",
                                 "127.0.0.1:" + std::to_string(ma)});
  ChildProcess* nb = start_node({"--layers", "2:4", "--identity", b.path, "--metrics-listen",
                                 "127.0.0.1:" + std::to_string(mb)});
  ASSERT_TRUE(na->ok() && nb->ok());
  ASSERT_TRUE(
      start_gateway({"--peers",
                     na->address() + "@" + a.node_id + "," + nb->address() + "@" + b.node_id,
                     "--audit-rate", "1", "--audit-local", model_, "--speculate", "off"})
          ->ok());
  const int port = gateway()->port();

  const json u = usage_of_completion(port, kPrompts[2], 9);
  ASSERT_EQ(u.value("completion_tokens", 0), 9) << u.dump();
  const int prompt = u.value("prompt_tokens", 0);

  // The audit of that session runs in the background: wait for its verdicts.
  json m;
  ASSERT_TRUE(eventually(
      [&] {
        m = scrape(port);
        return value(m, "swarm_audit_jobs_done_total{}") == 1;
      },
      std::chrono::seconds(60)))
      << m.dump(1);
  EXPECT_EQ(value(m, "swarm_completion_tokens_total{}"), 9);
  EXPECT_EQ(value(m, "swarm_prompt_tokens_total{}"), prompt);
  EXPECT_EQ(value(m, "swarm_audit_jobs_submitted_total{}"), 1);
  EXPECT_EQ(value(m, R"(swarm_audit_verdicts_total{verdict="pass"})"), 2);  // one per stage
  EXPECT_EQ(value(m, R"(swarm_audit_verdicts_total{verdict="fraud"})"), 0);
  EXPECT_GT(value(m, "swarm_audit_steps_checked_total{}"), 0);
  EXPECT_EQ(value(m, "swarm_failovers_total{}"), 0);
  EXPECT_EQ(value(m, "swarm_node_failures_total{}"), 0);
  EXPECT_EQ(value(m, "swarm_peers{}"), 2);
  for (const auto& [node, layers] : {std::pair{na, "0:2"}, std::pair{nb, "2:4"}}) {
    const std::string labels =
        "{layers=\"" + std::string(layers) + "\",peer=\"" + node->address() + "\"}";
    EXPECT_EQ(value(m, "swarm_peer_excluded" + labels), 0) << labels << m.dump(1);
    EXPECT_GT(value(m, "swarm_peer_rtt_seconds" + labels), 0) << labels;
  }

  // Each node ran every prompt position and each generated token but the last
  // (never fed back), in batches that add up.
  for (const auto& [mport, layers] : {std::pair{ma, "0:2"}, std::pair{mb, "2:4"}}) {
    const json n = scrape(mport);
    const double tokens = value(n, "swarm_node_tokens_total{}");
    EXPECT_EQ(tokens, prompt + 9 - 1) << layers << n.dump(1);
    EXPECT_EQ(value(n, "swarm_node_batch_tokens_sum{}"), tokens);
    EXPECT_EQ(value(n, R"(swarm_node_batch_tokens_bucket{le="+Inf"})"),
              value(n, "swarm_node_batch_tokens_count{}"));
    EXPECT_GE(value(n, "swarm_node_steps_total{}"), 9);
    EXPECT_EQ(value(n, "swarm_node_info{layers=\"" + std::string(layers) + "\"}"), 1);
    EXPECT_EQ(value(n, "swarm_node_kv_used_bytes{}") + value(n, "swarm_node_kv_free_bytes{}"),
              2.0 * (1u << 30));  // --kv-memory's default, 2G
    EXPECT_GT(value(n, "swarm_node_compute_seconds_total{}"), 0);
    EXPECT_GT(value(n, "swarm_node_layer_tokens_per_second{}"), 0);
    EXPECT_EQ(value(n, "swarm_node_queue_length{}"), 0);
  }
}

// A node of the chain dies under five streams: the gateway counts the failure
// and the failovers, and every completion still ends well.
TEST_F(MetricsTest, GatewayCountsNodeFailuresAndFailovers) {
  constexpr int kTokens = 24, kStreams = 5;
  const std::vector<std::string> prompts(kPrompts, kPrompts + kStreams);
  std::vector<std::string> want;
  for (const std::string& p : prompts) want.push_back(single_process(p, kTokens));
  ASSERT_TRUE(start_chain({{0, 1}, {1, 3}, {3, 4}, {0, 1}, {1, 3}, {3, 4}},
                          {"--step-timeout-ms", "1500"}, {"--link-delay-ms", "15"}));
  json m = scrape(gateway()->port());
  EXPECT_EQ(value(m, "swarm_failovers_total{}"), 0);
  expect_streams_survive_a_lost_middle_stage(SIGKILL, prompts, want, kTokens);
  m = scrape(gateway()->port());
  EXPECT_GE(value(m, "swarm_failovers_total{}"), 1) << m.dump(1);
  EXPECT_GE(value(m, "swarm_node_failures_total{}"), 1);
  EXPECT_EQ(sum_of(m, "swarm_completions_total"), kStreams);
  EXPECT_TRUE(std::isnan(value(m, R"(swarm_completions_total{finish_reason="error"})")));
  EXPECT_EQ(value(m, "swarm_requests_in_flight{}"), 0);
}

}  // namespace
}  // namespace swarm::testing
