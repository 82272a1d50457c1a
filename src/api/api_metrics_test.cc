#include "api/api_metrics.h"

#include <gtest/gtest.h>

#include <string>

namespace swarm {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(ApiMetricsTest, RequestsCountUnderTheirRoutesPatternAndUnknownPathsAsOther) {
  ApiMetrics m;
  m.count_request("/v1/chat/completions", 200);
  m.count_request("/chat/completions", 200);  // the alias without /v1
  m.count_request("/v1/models/some-model", 404);
  m.count_request("/v1/models/another", 404);
  m.count_request("/wp-admin/login.php", 404);
  m.count_request("/v1/health", 404);  // only /health exists
  const std::string t = m.text({});
  EXPECT_TRUE(
      has_line(t, R"(swarm_http_requests_total{code="200",endpoint="/v1/chat/completions"} 2)"))
      << t;
  EXPECT_TRUE(
      has_line(t, R"(swarm_http_requests_total{code="404",endpoint="/v1/models/{model}"} 2)"))
      << t;
  EXPECT_TRUE(has_line(t, R"(swarm_http_requests_total{code="404",endpoint="other"} 2)")) << t;
}

TEST(ApiMetricsTest, CompletionsAddTokensLatenciesAndSpeculation) {
  ApiMetrics m;
  GenerationResult r;
  r.prompt_tokens = 12;
  r.completion_tokens = 5;
  r.prompt_seconds = 0.2;
  r.generation_seconds = 0.08;  // 4 gaps of 0.02 s
  r.speculation.drafter = "ngram";
  r.speculation.drafted = 6;
  r.speculation.accepted = 4;
  r.speculation.runs = 3;
  r.speculation.cancelled_runs = 1;
  r.speculation.draft_chains = 3;
  r.speculation.chains_first_held = 2;
  r.speculation.chains_all_held = 1;
  m.count_completion(r, "length");
  m.count_completion(GenerationResult{}, "error");  // failed before any token
  const std::string t = m.text({});
  EXPECT_TRUE(has_line(t, "swarm_prompt_tokens_total 12")) << t;
  EXPECT_TRUE(has_line(t, "swarm_completion_tokens_total 5")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_completions_total{finish_reason="error"} 1)")) << t;
  EXPECT_TRUE(has_line(t, "swarm_time_to_first_token_seconds_count 1")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_time_to_first_token_seconds_bucket{le="0.1"} 0)")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_time_to_first_token_seconds_bucket{le="0.25"} 1)")) << t;
  EXPECT_TRUE(has_line(t, "swarm_time_per_output_token_seconds_count 4")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_time_per_output_token_seconds_bucket{le="0.01"} 0)")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_time_per_output_token_seconds_bucket{le="0.025"} 4)")) << t;
  EXPECT_TRUE(has_line(t, "swarm_speculation_drafted_tokens_total 6")) << t;
  EXPECT_TRUE(has_line(t, "swarm_speculation_accepted_tokens_total 4")) << t;
  EXPECT_TRUE(has_line(t, "swarm_speculation_cancelled_runs_total 1")) << t;
  EXPECT_TRUE(has_line(t, "swarm_speculation_draft_chains_total 3")) << t;
  EXPECT_TRUE(has_line(t, "swarm_speculation_chains_first_held_total 2")) << t;
  EXPECT_TRUE(has_line(t, "swarm_speculation_chains_all_held_total 1")) << t;
}

TEST(ApiMetricsTest, InFlightFollowsTheGuards) {
  ApiMetrics m;
  {
    auto a = m.in_flight();
    auto b = m.in_flight();
    EXPECT_TRUE(has_line(m.text({}), "swarm_requests_in_flight 2"));
  }
  EXPECT_TRUE(has_line(m.text({}), "swarm_requests_in_flight 0"));
}

TEST(MetricSnapshotTest, HistogramsAreCumulativeWithInfAndLabelValuesEscaped) {
  MetricSnapshot s;
  s.histogram("swarm_x", "x", {1, 2}, {3, 0, 2}, 9.5)
      .gauge("swarm_y", "y", 1, {{"peer", "a\"b\\c\nd"}});
  const std::string t = metrics_text(s.take());
  EXPECT_TRUE(has_line(t, R"(swarm_x_bucket{le="1"} 3)")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_x_bucket{le="2"} 3)")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_x_bucket{le="+Inf"} 5)")) << t;
  EXPECT_TRUE(has_line(t, "swarm_x_count 5")) << t;
  EXPECT_TRUE(has_line(t, "swarm_x_sum 9.5")) << t;
  EXPECT_TRUE(has_line(t, R"(swarm_y{peer="a\"b\\c\nd"} 1)")) << t;
  EXPECT_TRUE(has_line(t, "# TYPE swarm_y gauge")) << t;
}

}  // namespace
}  // namespace swarm
