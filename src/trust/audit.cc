#include "trust/audit.h"

#include <algorithm>

namespace swarm::trust {
namespace {

// How many of `r`'s tokens equal the history from its position on.
int tokens_in_history(const StepRecord& r, const std::vector<int32_t>& history) {
  int k = 0;
  const int n = static_cast<int>(r.tokens.size());
  while (k < n && r.position + k < static_cast<int>(history.size()) &&
         r.tokens[static_cast<size_t>(k)] == history[static_cast<size_t>(r.position + k)])
    ++k;
  return k;
}

Hash window(const std::vector<Hash>& rows, int from, int to) {
  return combine_rows(rows.data() + from, static_cast<size_t>(to - from));
}

// The combination of the first `m` of a commitment's per-row hashes (bytes).
std::string combined(const google::protobuf::RepeatedPtrField<std::string>& rows, int m) {
  std::vector<Hash> h(static_cast<size_t>(m));
  for (int i = 0; i < m; ++i) {
    const std::string& b = rows.Get(i);
    if (b.size() != kHashBytes) return {};
    std::copy(b.begin(), b.end(), h[static_cast<size_t>(i)].begin());
  }
  return std::string(as_view(combine_rows(h)));
}

// The answer a greedy last stage owes for `r`, from the reference's argmax
// (doc/speculation.md: a draft is accepted while it equals the argmax of the
// row before it; then the argmax after the last accepted one is sampled).
std::vector<int32_t> greedy_answer(const StepRecord& r, const std::vector<int32_t>& argmax,
                                   int* accepted) {
  const int n = static_cast<int>(r.tokens.size());
  const int lead = n - r.n_drafts;
  *accepted = 0;
  std::vector<int32_t> out;
  for (int i = lead; i < n; ++i) {
    const int row = r.position + i - 1;  // the row that predicts token i
    if (row < 0 || argmax[static_cast<size_t>(row)] != r.tokens[static_cast<size_t>(i)]) break;
    out.push_back(r.tokens[static_cast<size_t>(i)]);
    ++*accepted;
  }
  out.push_back(argmax[static_cast<size_t>(r.position + lead + *accepted - 1)]);
  return out;
}

}  // namespace

const char* to_string(Verdict::Kind k) {
  switch (k) {
    case Verdict::Kind::kPass: return "pass";
    case Verdict::Kind::kFraud: return "fraud";
    case Verdict::Kind::kDispute: return "dispute";
    case Verdict::Kind::kMissing: return "missing";
  }
  return "?";
}

int audit_window(const AuditedSession& session, const std::vector<int32_t>& history,
                 const std::vector<bool>& sampled) {
  int end = 0;
  for (size_t i = 0; i < session.steps.size() && i < sampled.size(); ++i) {
    if (!sampled[i]) continue;
    const StepRecord& r = session.steps[i];
    const int k = tokens_in_history(r, history);
    if (k > 0) end = std::max(end, r.position + k);
  }
  return end;
}

std::vector<Verdict> judge(const AuditedSession& session, const std::vector<int32_t>& history,
                           const ReferenceRows& reference) {
  const size_t n_stages = session.stages.size();
  std::vector<Verdict> out(n_stages);
  for (size_t k = 0; k < n_stages; ++k) out[k].stage = k;
  if (n_stages == 0 || reference.output_rows.size() != n_stages) return out;
  const int n_ref = static_cast<int>(
      std::min<size_t>(reference.output_rows[0].size(), history.size()));
  const std::vector<Hash> token_rows =
      token_row_hashes(history.data(), static_cast<int64_t>(history.size()));
  PrefixHashes prefixes;
  prefixes.append(history.data(), n_ref);
  // Positions [0, verified[k]) of stage k's cache were built from inputs that
  // matched the reference: only then does a wrong output prove a wrong
  // computation by stage k, not a cache an earlier stage poisoned.
  std::vector<int> verified(n_stages, 0);
  auto fault = [&](size_t k, Verdict::Kind kind, const StepRecord& r, std::string why,
                   const v1::Commitment* c) {
    if (out[k].kind != Verdict::Kind::kPass) return;
    out[k].kind = kind;
    out[k].step_id = r.step_id;
    out[k].reason = std::move(why);
    if (c) out[k].evidence = *c;
  };
  for (const StepRecord& r : session.steps) {
    const int p = r.position;
    const int n = static_cast<int>(r.tokens.size());
    const int in_history = tokens_in_history(r, history);
    const Hash prefix_after = p <= n_ref ? PrefixHashes::continued(prefixes.at(std::min(p, n_ref)), r.tokens.data(), n)
                                         : Hash{};
    for (size_t k = 0; k < n_stages; ++k) {
      if (out[k].kind != Verdict::Kind::kPass) continue;
      const AuditedStage& stage = session.stages[k];
      if (k >= r.commitments.size()) {
        fault(k, Verdict::Kind::kMissing, r, "step " + std::to_string(r.step_id) + ": no commitment",
              nullptr);
        continue;
      }
      const v1::Commitment& c = r.commitments[k];
      if (!stage.public_key.empty()) {
        if (c.public_key() != stage.public_key) {
          fault(k, Verdict::Kind::kMissing, r,
                "step " + std::to_string(r.step_id) + ": commitment not signed by the stage's key", &c);
          continue;
        }
        if (const Status s = verify_signature(c); !s.ok()) {
          fault(k, Verdict::Kind::kMissing, r, "step " + std::to_string(r.step_id) + ": " + s.message(), &c);
          continue;
        }
      }
      if (c.step_id() != r.step_id || c.position() != p || c.n_tokens() != n ||
          c.first_layer() != stage.first_layer || c.last_layer() != stage.last_layer ||
          c.model_id() != session.model_id || c.session_id().empty()) {
        fault(k, Verdict::Kind::kMissing, r,
              "step " + std::to_string(r.step_id) + ": the commitment names another step, range or model", &c);
        continue;
      }
      // The rows to compare: the whole step when every token of it is in the
      // history; with per-row hashes, the part before a rejected draft.
      const bool per_row = c.input_rows_size() == n && c.output_rows_size() == n;
      if (per_row && (combined(c.input_rows(), n) != c.input_hash() ||
                      combined(c.output_rows(), n) != c.output_hash())) {
        fault(k, Verdict::Kind::kMissing, r,
              "step " + std::to_string(r.step_id) + ": its row hashes do not combine to its hashes", &c);
        continue;
      }
      const int m = in_history == n ? n : per_row ? in_history : 0;
      if (m == 0 || p + m > n_ref) continue;
      // Its cache must have held the history's tokens, then the step's.
      if (c.prefix_hash() != as_view(prefix_after)) continue;
      const int end = p + m;
      const Hash in_ref = k == 0 ? window(token_rows, p, end) : window(reference.output_rows[k - 1], p, end);
      const Hash out_ref = window(reference.output_rows[k], p, end);
      const bool in_ok = (m == n ? c.input_hash() : combined(c.input_rows(), m)) == as_view(in_ref);
      const bool out_ok = (m == n ? c.output_hash() : combined(c.output_rows(), m)) == as_view(out_ref);
      const bool cache_ok = verified[k] >= p;
      if (in_ok && cache_ok) verified[k] = std::max(verified[k], end);
      ++out[k].steps_checked;
      if (in_ok && !out_ok && cache_ok) {
        fault(k, Verdict::Kind::kFraud, r,
              "step " + std::to_string(r.step_id) + " (positions " + std::to_string(p) + ".." +
                  std::to_string(end) + ", layers " + std::to_string(stage.first_layer) + ":" +
                  std::to_string(stage.last_layer) + "): committed other output rows than the reference " +
                  hex(out_ref).substr(0, 16) + " computes from the same input",
              &c);
      } else if (!in_ok && k > 0 && c.input_hash() != r.commitments[k - 1].output_hash()) {
        // What it says it received is not what the stage before says it sent.
        const std::string why = "step " + std::to_string(r.step_id) + ": stage " + std::to_string(k) +
                                " received other rows than stage " + std::to_string(k - 1) + " committed to send";
        fault(k, Verdict::Kind::kDispute, r, why, &c);
        fault(k - 1, Verdict::Kind::kDispute, r, why, &r.commitments[k - 1]);
      }
    }
    // The last stage's choice of tokens, exact for greedy requests: the
    // drafts it accepted and the token it sampled follow from the argmax.
    const size_t last = n_stages - 1;
    if (out[last].kind != Verdict::Kind::kPass || last >= r.commitments.size() || r.answer.empty()) continue;
    if (!session.greedy) {
      // Sampled plain decoding, replayed with the session's seed.
      auto it = reference.sampled.find(p + n);
      if (r.n_drafts > 0 || it == reference.sampled.end() || in_history < n || verified[last] < p + n) continue;
      const v1::Commitment& c = r.commitments[last];
      if (c.tokens_hash() != as_view(tokens_hash(r.answer.data(), r.answer.size(), r.accepted_drafts)))
        fault(last, Verdict::Kind::kMissing, r,
              "step " + std::to_string(r.step_id) + ": the answer is not the one its commitment names", &c);
      else if (r.answer.size() != 1 || r.answer[0] != it->second)
        fault(last, Verdict::Kind::kFraud, r,
              "step " + std::to_string(r.step_id) + ": sampled token " + std::to_string(r.answer.back()) +
                  "; the session's sampler with its seed picks " + std::to_string(it->second),
              &c);
      continue;
    }
    if (reference.argmax.empty()) continue;
    const int lead = n - r.n_drafts;
    const int known = lead + r.accepted_drafts;  // tokens of the step the answer builds on
    if (in_history < std::min(known, n) || p + known > n_ref || (lead == 0 && p == 0)) continue;
    // The rows its choice rests on came from right inputs.
    if (verified[last] < p + std::min(known, n)) continue;
    const v1::Commitment& c = r.commitments[last];
    // A reference may know the argmax of its last rows only (-1 elsewhere).
    bool known_rows = true;
    for (int row = std::max(0, p + lead - 1); row < std::min(n_ref, p + n); ++row)
      known_rows = known_rows && reference.argmax[static_cast<size_t>(row)] >= 0;
    if (!known_rows) continue;
    int accepted = 0;
    const std::vector<int32_t> expected = greedy_answer(r, reference.argmax, &accepted);
    const Hash answered = tokens_hash(r.answer.data(), r.answer.size(), r.accepted_drafts);
    if (c.tokens_hash() != as_view(answered)) {
      fault(last, Verdict::Kind::kMissing, r,
            "step " + std::to_string(r.step_id) + ": the answer is not the one its commitment names", &c);
    } else if (expected != r.answer || accepted != r.accepted_drafts) {
      fault(last, Verdict::Kind::kFraud, r,
            "step " + std::to_string(r.step_id) + ": answered token " + std::to_string(r.answer.back()) +
                " after " + std::to_string(r.accepted_drafts) + " accepted drafts; greedy gives " +
                std::to_string(expected.back()) + " after " + std::to_string(accepted),
            &c);
    }
  }
  return out;
}

}  // namespace swarm::trust
