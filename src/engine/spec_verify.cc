#include "engine/spec_verify.h"

#include <algorithm>
#include <cmath>

namespace swarm {
namespace {

// q[x], renormalised over the entries given; one-hot at `draft` when empty.
double q_of(const SparseProbs& q, int32_t x, int32_t draft) {
  if (q.ids.empty()) return x == draft ? 1.0 : 0.0;
  double sum = 0, at = 0;
  for (size_t i = 0; i < q.ids.size(); ++i) {
    sum += q.probs[i];
    if (q.ids[i] == x) at += q.probs[i];
  }
  return sum > 0 ? at / sum : 0.0;
}

}  // namespace

Judgement judge_draft(const std::vector<float>& p, int32_t draft, const SparseProbs& q,
                      double u_accept, double u_resample) {
  const int n = static_cast<int>(p.size());
  const double px = draft >= 0 && draft < n ? p[draft] : 0.0;
  const double qx = q_of(q, draft, draft);
  // A draft the drafter could not have drawn (qx == 0) is judged as if q were
  // one-hot: accepted with probability p[x]. Still exact: q is then one-hot.
  const double ratio = qx > 0 ? px / qx : px;
  if (u_accept < std::min(1.0, ratio)) return {true, draft};

  // The residual max(0, p - q): q is sparse, so subtract only where it has mass.
  std::vector<double> residual(p.begin(), p.end());
  if (qx > 0) {
    if (q.ids.empty()) {
      residual[draft] = std::max(0.0, residual[draft] - 1.0);
    } else {
      double sum = 0;
      for (float v : q.probs) sum += v;
      for (size_t i = 0; i < q.ids.size(); ++i)
        if (q.ids[i] >= 0 && q.ids[i] < n)
          residual[q.ids[i]] = std::max(0.0, residual[q.ids[i]] - q.probs[i] / sum);
    }
  } else {
    residual[draft] = 0;  // the draft was rejected with probability 1 - p[x]: take it out
  }
  double total = 0;
  for (double r : residual) total += r;
  if (!(total > 0)) {
    // p == q up to rounding: the draft could only have been rejected by rounding.
    return {true, draft};
  }
  const double target = u_resample * total;
  double cum = 0;
  int32_t last = draft;
  for (int i = 0; i < n; ++i) {
    if (residual[i] <= 0) continue;
    cum += residual[i];
    last = i;
    if (target < cum) return {false, static_cast<int32_t>(i)};
  }
  return {false, last};  // target landed in the rounding slack
}

Status validate_sparse_probs(const SparseProbs& q, int n_vocab) {
  if (q.ids.size() != q.probs.size())
    return Status::InvalidArgument("draft probabilities: " + std::to_string(q.ids.size()) +
                                   " ids but " + std::to_string(q.probs.size()) + " probabilities");
  double sum = 0;
  for (size_t i = 0; i < q.ids.size(); ++i) {
    if (q.ids[i] < 0 || q.ids[i] >= n_vocab)
      return Status::InvalidArgument("draft probabilities: token " + std::to_string(q.ids[i]) +
                                     " is outside the vocabulary [0, " + std::to_string(n_vocab) +
                                     ")");
    if (!std::isfinite(q.probs[i]) || q.probs[i] < 0)
      return Status::InvalidArgument("draft probabilities: entry " + std::to_string(i) +
                                     " is not a finite probability >= 0");
    sum += q.probs[i];
  }
  if (!q.ids.empty() && !(sum > 0))
    return Status::InvalidArgument("draft probabilities: they sum to 0");
  return Status::Ok();
}

}  // namespace swarm
