// How fast audits catch a cheater, by the gateway's own sampling code
// (pipeline/request_audit.h: plan_audit, trust::audit_window) over many
// simulated trials; bench/audit_bench.sh checks the same on real swarms with
// fewer trials. A session is a prompt step and then one step per generated
// token through a two-stage chain; the cheater serves the second stage and
// cheats on each step with probability `cheat`; its fraud is proven when an
// audit's window covers a step it cheated on (trust::judge on such a window
// finds it: tests/trust_swarm_test.cc). One JSON line per (audit rate, cheat
// share): the share of cheaters caught within 100 of their steps, and the
// median and 99th percentile of steps until exclusion.
//   audit_detection [--trials N] [--session-steps S]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "pipeline/request_audit.h"

int main(int argc, char** argv) {
  int trials = 10000, session_steps = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--trials")) trials = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--session-steps")) session_steps = std::atoi(argv[i + 1]);
  }
  using namespace swarm;
  std::mt19937_64 rng(1);
  // A session's steps: the prompt (8 tokens), then one token a step.
  trust::AuditedSession session;
  session.stages = {{"honest:1", "", "", 0, 2}, {"cheater:2", "", "", 2, 4}};
  std::vector<int32_t> history;
  for (int i = 0; i < 8; ++i) history.push_back(i + 1);
  trust::StepRecord prompt;
  prompt.position = 0;
  prompt.tokens = history;
  session.steps.push_back(prompt);
  for (int s = 1; s < session_steps; ++s) {
    trust::StepRecord r;
    r.position = static_cast<int>(history.size());
    r.tokens = {100 + s};
    history.push_back(100 + s);
    session.steps.push_back(r);
  }
  const int kMaxSteps = 100000;
  for (double rate : {0.01, 0.05, 0.10}) {
    for (double cheat : {1.0, 0.3, 0.1}) {
      std::vector<int> until;
      int within_100 = 0;
      std::uniform_real_distribution<double> u(0, 1);
      for (int t = 0; t < trials; ++t) {
        int steps = 0;
        bool caught = false;
        while (!caught && steps < kMaxSteps) {
          std::vector<int> cheated_end;  // the end position of each step it cheated on
          for (const trust::StepRecord& r : session.steps)
            if (u(rng) < cheat) cheated_end.push_back(r.position + static_cast<int>(r.tokens.size()));
          const AuditJob job = plan_audit(session, history, v1::Tensor::F32,
                                          [&](const std::string&) { return rate; }, rng);
          steps += session_steps;
          for (int end : cheated_end) caught = caught || end <= job.window;
        }
        until.push_back(steps);
        if (caught && steps <= 100) ++within_100;
      }
      std::sort(until.begin(), until.end());
      std::printf(
          "{\"bench\":\"audit_detection_sampling\",\"audit_rate\":%.2f,\"cheat_share\":%.1f,\"session_steps\":%d,"
          "\"trials\":%d,\"caught_within_100_steps\":%.4f,\"median_steps\":%d,\"p99_steps\":%d}\n",
          rate, cheat, session_steps, trials, static_cast<double>(within_100) / trials,
          until[until.size() / 2], until[until.size() * 99 / 100]);
    }
  }
  return 0;
}
