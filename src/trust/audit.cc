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

// A tolerant stage's sketches for one step: those of its first `m` rows (the
// ones in the history) against the reference's. Each row the rule sketches
// must be there.
struct SketchVerdict {
  int compared = 0;
  bool missing = false;  // a required sketch absent, or malformed
  std::string reason;    // the first failure ("" if none)
};
SketchVerdict judge_sketches(const v1::Commitment& c, int p, int n, int m,
                             const std::vector<RowSketch>& reference, const SketchTolerance& tolerance) {
  SketchVerdict v;
  std::map<int, const v1::RowSketch*> by_position;
  for (const v1::RowSketch& s : c.sketches()) by_position.emplace(s.position(), &s);
  for (int i = 0; i < m; ++i) {
    const int position = p + i;
    auto it = by_position.find(position);
    if (it == by_position.end()) {
      if (!is_sketched(p, n, i, false)) continue;
      v.missing = true;
      v.reason = "no sketch of row " + std::to_string(position);
      return v;
    }
    auto claimed = from_proto(*it->second);
    if (!claimed.ok()) {
      v.missing = true;
      v.reason = claimed.status().message();
      return v;
    }
    if (static_cast<size_t>(position) >= reference.size() || reference[static_cast<size_t>(position)].indices.empty())
      continue;
    ++v.compared;
    const SketchCheck check = check_sketch(*claimed, reference[static_cast<size_t>(position)], tolerance);
    if (!check.ok && v.reason.empty()) v.reason = check.reason;
  }
  return v;
}

std::string token_list(const std::vector<int32_t>& tokens) {
  std::string s;
  for (int32_t t : tokens) s += (s.empty() ? "" : ",") + std::to_string(t);
  return "[" + s + "]";
}

}  // namespace

std::optional<SampledAnswer> replay_step(
    const StepRecord& step,
    const std::function<std::optional<Decision>(int position, int32_t draft, const SparseProbs& q)>& decide) {
  const int n = static_cast<int>(step.tokens.size());
  const int lead = n - step.n_drafts;
  if (lead < 0) return std::nullopt;
  SampledAnswer out;
  static const SparseProbs kNone;
  // Draft i, the token at position + i, is judged against the row before it
  // (doc/speculation.md); the first rejected one is replaced and ends the step.
  for (int i = lead; i < n; ++i) {
    const size_t q = static_cast<size_t>(i - lead);
    const auto d = decide(step.position + i, step.tokens[static_cast<size_t>(i)],
                          q < step.draft_probs.size() ? step.draft_probs[q] : kNone);
    if (!d) return std::nullopt;
    if (!d->accepted) {
      out.tokens.push_back(d->token);
      return out;
    }
    out.tokens.push_back(step.tokens[static_cast<size_t>(i)]);
    ++out.accepted_drafts;
  }
  // Every draft held (or there were none): the token after the step.
  const auto d = decide(step.position + n, -1, kNone);
  if (!d) return std::nullopt;
  out.tokens.push_back(d->token);
  return out;
}

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
                           const ReferenceRows& reference, const SketchTolerance& tolerance) {
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
  // Stages judged by sketches: the first inexact one and all after it.
  std::vector<bool> tolerant(n_stages, false);
  for (size_t k = 0; k < n_stages; ++k)
    tolerant[k] = session.stages[k].inexact || (k > 0 && tolerant[k - 1]);
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
      const bool in_ok = (m == n ? c.input_hash() : combined(c.input_rows(), m)) == as_view(in_ref);
      const bool cache_ok = verified[k] >= p;
      if (in_ok && cache_ok) verified[k] = std::max(verified[k], end);
      const bool first_tolerant = tolerant[k] && (k == 0 || !tolerant[k - 1]);
      if (tolerant[k]) {
        // The first tolerant stage gets exact inputs (the stages before it are
        // exact), so a sketch beyond the tolerance proves a wrong computation;
        // later ones get another device's rows, so only a dispute.
        if (reference.sketches.size() != n_stages) continue;
        const SketchVerdict v = judge_sketches(c, p, n, m, reference.sketches[k], tolerance);
        out[k].sketches_checked += v.compared;
        if (v.compared > 0 || v.missing) ++out[k].steps_checked;
        const std::string at = "step " + std::to_string(r.step_id) + " (layers " +
                               std::to_string(stage.first_layer) + ":" + std::to_string(stage.last_layer) + "): ";
        if (v.missing) {
          fault(k, Verdict::Kind::kMissing, r, at + v.reason, &c);
        } else if (!v.reason.empty() && first_tolerant && in_ok && cache_ok) {
          fault(k, Verdict::Kind::kFraud, r, at + "its sketch differs from the reference beyond the tolerance: " + v.reason, &c);
        } else if (!v.reason.empty() && !first_tolerant) {
          const std::string why = at + "its sketch differs from the reference beyond the tolerance, from rows an "
                                       "inexact stage before it sent: " + v.reason;
          fault(k, Verdict::Kind::kDispute, r, why, &c);
          fault(k - 1, Verdict::Kind::kDispute, r, why, &r.commitments[k - 1]);
        }
      } else {
        ++out[k].steps_checked;
        const Hash out_ref = window(reference.output_rows[k], p, end);
        const bool out_ok = (m == n ? c.output_hash() : combined(c.output_rows(), m)) == as_view(out_ref);
        if (in_ok && !out_ok && cache_ok)
          fault(k, Verdict::Kind::kFraud, r,
                "step " + std::to_string(r.step_id) + " (positions " + std::to_string(p) + ".." +
                    std::to_string(end) + ", layers " + std::to_string(stage.first_layer) + ":" +
                    std::to_string(stage.last_layer) + "): committed other output rows than the reference " +
                    hex(out_ref).substr(0, 16) + " computes from the same input",
                &c);
      }
      // What it says it received is not what the stage before says it sent
      // (where its input can be compared with the reference's: an exact
      // stage, or the first tolerant one).
      if ((!tolerant[k] || first_tolerant) && !in_ok && k > 0 &&
          c.input_hash() != r.commitments[k - 1].output_hash()) {
        const std::string why = "step " + std::to_string(r.step_id) + ": stage " + std::to_string(k) +
                                " received other rows than stage " + std::to_string(k - 1) + " committed to send";
        fault(k, Verdict::Kind::kDispute, r, why, &c);
        fault(k - 1, Verdict::Kind::kDispute, r, why, &r.commitments[k - 1]);
      }
    }
    // The last stage's choice of tokens: the drafts it accepted and the token
    // after them. Exact for greedy requests (they follow from the reference's
    // argmax) and, where the reference replayed the session's sampler (its
    // draws are keyed by position, engine/sampler.h), for sampled ones.
    const size_t last = n_stages - 1;
    if (out[last].kind != Verdict::Kind::kPass || last >= r.commitments.size() || r.answer.empty() ||
        tolerant[last])
      continue;
    const int lead = n - r.n_drafts;
    const int known = std::min(n, lead + r.accepted_drafts);  // tokens of the step the answer builds on
    // The rows its choice rests on are in the history and came from right inputs.
    if (in_history < known || verified[last] < p + known) continue;
    std::optional<SampledAnswer> expected;
    if (session.greedy) {
      expected = replay_step(r, [&](int position, int32_t draft, const SparseProbs&) -> std::optional<Decision> {
        const int row = position - 1;  // a reference may know the argmax of its last rows only (-1 elsewhere)
        if (row < 0 || row >= std::min<int>(n_ref, static_cast<int>(reference.argmax.size())) ||
            reference.argmax[static_cast<size_t>(row)] < 0)
          return std::nullopt;
        const int32_t best = reference.argmax[static_cast<size_t>(row)];
        return Decision{best, best == draft};
      });
    } else if (auto it = reference.sampled.find(r.step_id); it != reference.sampled.end()) {
      expected = it->second;
    }
    if (!expected) continue;
    ++out[last].choices_checked;
    if (r.n_drafts > 0) ++out[last].draft_choices_checked;
    const v1::Commitment& c = r.commitments[last];
    const Hash answered = tokens_hash(r.answer.data(), r.answer.size(), r.accepted_drafts);
    if (c.tokens_hash() != as_view(answered)) {
      fault(last, Verdict::Kind::kMissing, r,
            "step " + std::to_string(r.step_id) + ": the answer is not the one its commitment names", &c);
    } else if (expected->tokens != r.answer || expected->accepted_drafts != r.accepted_drafts) {
      fault(last, Verdict::Kind::kFraud, r,
            "step " + std::to_string(r.step_id) + ": answered " + token_list(r.answer) + " after " +
                std::to_string(r.accepted_drafts) + " accepted drafts; " +
                (session.greedy ? "greedy gives " : "the session's sampler with its seed picks ") +
                token_list(expected->tokens) + " after " + std::to_string(expected->accepted_drafts),
            &c);
    }
  }
  return out;
}

}  // namespace swarm::trust
