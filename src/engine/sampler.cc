#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/mix64.h"

namespace swarm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Status bad(const std::string& field, const std::string& why) {
  return Status::InvalidArgument("sampling parameter " + field + " " + why);
}

// Bytes at the end of `s` that begin a UTF-8 character but do not finish it.
size_t unfinished_utf8_tail(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: keep looking for the lead
    size_t need = 0;
    if ((c & 0xE0) == 0xC0)
      need = 2;
    else if ((c & 0xF0) == 0xE0)
      need = 3;
    else if ((c & 0xF8) == 0xF0)
      need = 4;
    return need > back ? back : 0;  // ASCII, complete, or not UTF-8: nothing to wait for
  }
  return 0;
}

}  // namespace

Status SamplingParams::validate(int n_vocab) const {
  if (n_vocab <= 0)
    return Status::InvalidArgument("sampling needs a vocabulary; n_vocab is " +
                                   std::to_string(n_vocab));
  if (std::isnan(temperature)) return bad("temperature", "is NaN");
  if (!(top_p >= 0)) return bad("top_p", "must be >= 0 (>= 1 turns it off)");
  if (!(min_p >= 0 && min_p <= 1)) return bad("min_p", "must be in [0, 1]");
  if (!(repeat_penalty > 0) || std::isinf(repeat_penalty))
    return bad("repeat_penalty", "must be finite and > 0");
  if (repeat_last_n < -1) return bad("repeat_last_n", "must be >= -1 (-1: the whole history)");
  if (!std::isfinite(presence_penalty)) return bad("presence_penalty", "must be finite");
  if (!std::isfinite(frequency_penalty)) return bad("frequency_penalty", "must be finite");
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= n_vocab)
      return bad("logit_bias", "names token " + std::to_string(id) +
                                   ", outside the vocabulary of " + std::to_string(n_vocab));
    if (std::isnan(bias) || bias == std::numeric_limits<float>::infinity())
      return bad("logit_bias", "for token " + std::to_string(id) + " must be a number or -inf");
  }
  for (int32_t id : stop_tokens)
    if (id < 0 || id >= n_vocab)
      return bad("stop_tokens", "names token " + std::to_string(id) +
                                    ", outside the vocabulary of " + std::to_string(n_vocab));
  if (max_tokens < -1) return bad("max_tokens", "must be >= -1 (-1: no limit)");
  if (grammar_start < 0) return bad("grammar_start", "must be >= 0");
  if (!grammar.empty()) {
    const Result<Grammar> g = parse_gbnf(grammar);
    if (!g.ok()) return bad("grammar", "is not valid: " + g.status().message());
  }
  return Status::Ok();
}

double sampling_uniform(uint64_t seed, int position, int draw) {
  // Two rounds keyed by the seed, then the counter: distinct (seed, position,
  // draw) give independent-looking words. The top 53 bits make the double, the
  // same on every platform, unlike std::uniform_real_distribution.
  const uint64_t counter = (static_cast<uint64_t>(static_cast<uint32_t>(position)) << 8) |
                           static_cast<uint8_t>(draw);
  const uint64_t word = mix64(mix64(seed) ^ mix64(counter ^ 0x5851f42d4c957f2dull));
  return static_cast<double>(word >> 11) * 0x1.0p-53;
}

Sampler::Sampler(SamplingParams params, int n_vocab, std::shared_ptr<const GrammarVocab> vocab)
    : params_(std::move(params)), n_vocab_(n_vocab), vocab_(std::move(vocab)) {
  if (params_.grammar.empty()) return;
  Result<Grammar> g = parse_gbnf(params_.grammar);
  if (!g.ok()) {
    grammar_status_ = g.status();
    return;
  }
  if (!vocab_ || vocab_->pieces.size() < static_cast<size_t>(n_vocab_)) {
    grammar_status_ = Status::Internal("a grammar needs the model's token bytes");
    return;
  }
  grammar_ = std::make_shared<const Grammar>(std::move(g).value());
  grammar_state_ = GrammarState::start(*grammar_);
}

bool Sampler::constrained() const {
  return grammar_ != nullptr && accepted_ >= params_.grammar_start;
}

bool Sampler::grammar_finished() const {
  return constrained() && (grammar_dead_ || !grammar_state_.can_continue());
}

bool Sampler::grammar_allows(int32_t token) const {
  if (grammar_dead_) return false;
  if (is_stop_token(token)) return grammar_state_.complete();
  if (token < 0 || token >= n_vocab_ || !vocab_->is_text[static_cast<size_t>(token)]) return false;
  return grammar_state_.accepts(*grammar_, vocab_->pieces[static_cast<size_t>(token)]);
}

void Sampler::accept(int32_t token) {
  if (grammar_) {
    if (accepted_ >= params_.grammar_start && !grammar_dead_ && !is_stop_token(token)) {
      const bool text = token >= 0 && token < n_vocab_ && vocab_->is_text[static_cast<size_t>(token)];
      if (!text || !grammar_state_.advance(*grammar_, vocab_->pieces[static_cast<size_t>(token)]))
        grammar_dead_ = true;
    }
    ++accepted_;
  }
  const int n = params_.repeat_last_n;
  if (n == 0) return;
  history_.push_back(token);
  if (n > 0 && history_.size() > static_cast<size_t>(n)) history_.erase(history_.begin());
}

void Sampler::reset() {
  history_.clear();
  accepted_ = 0;
  grammar_dead_ = false;
  if (grammar_) grammar_state_ = GrammarState::start(*grammar_);
}

bool Sampler::is_stop_token(int32_t token) const {
  return std::find(params_.stop_tokens.begin(), params_.stop_tokens.end(), token) !=
         params_.stop_tokens.end();
}

std::vector<float> Sampler::adjusted_logits(const float* logits) const {
  std::vector<float> v(logits, logits + n_vocab_);
  for (const auto& [id, bias] : params_.logit_bias)
    if (id >= 0 && id < n_vocab_) v[id] += bias;

  const float rp = params_.repeat_penalty;
  const float pres = params_.presence_penalty;
  const float freq = params_.frequency_penalty;
  if (history_.empty() || (rp == 1.0f && pres == 0.0f && freq == 0.0f)) return v;
  std::vector<int32_t> seen = history_;
  std::sort(seen.begin(), seen.end());
  for (size_t i = 0; i < seen.size();) {
    size_t j = i;
    while (j < seen.size() && seen[j] == seen[i]) ++j;
    const int32_t id = seen[i];
    const auto count = static_cast<float>(j - i);
    i = j;
    if (id < 0 || id >= n_vocab_) continue;
    float& l = v[id];
    // llama.cpp's repetition penalty: it always makes the token less likely.
    l = l <= 0 ? l * rp : l / rp;
    l -= count * freq + pres;
  }
  return v;
}

namespace {
// Most likely first; ties go to the lower id, so the order never depends on the
// sort's implementation.
bool before(const float la, int32_t ia, const float lb, int32_t ib) {
  return la > lb || (la == lb && ia < ib);
}
}  // namespace

std::vector<Sampler::Candidate> Sampler::allowed_in_order(std::vector<Candidate> c) const {
  const auto order = [](const Candidate& a, const Candidate& b) {
    return before(a.logit, a.id, b.logit, b.id);
  };
  const size_t want = params_.temperature > 0 && params_.top_k > 0
                          ? static_cast<size_t>(params_.top_k)
                          : params_.temperature > 0 ? c.size() : 1;
  // Without top-k and top-p, min-p alone decides how far down the list matters.
  const bool min_p_ends = params_.temperature > 0 && params_.top_k <= 0 &&
                          params_.top_p >= 1.0f && params_.min_p > 0.0f;
  const double floor = min_p_ends ? std::log(static_cast<double>(params_.min_p)) : 0.0;
  // One token at a time while most pass; once many were rejected (the model
  // wants what the grammar forbids), the whole mask in one trie walk.
  constexpr int kRejectionsBeforeMask = 32;
  int rejected = 0;
  std::vector<char> mask;
  auto build_mask = [&] {
    mask.assign(std::max(static_cast<size_t>(n_vocab_), vocab_->pieces.size()), 0);
    if (!grammar_dead_) grammar_state_.allowed_tokens(*grammar_, vocab_->trie, &mask);
    for (int32_t t : params_.stop_tokens)
      if (t >= 0 && static_cast<size_t>(t) < mask.size())
        mask[static_cast<size_t>(t)] = !grammar_dead_ && grammar_state_.complete();
  };
  // Where few bytes may come next (between a JSON value's parts, in a
  // literal key), the trie walk is cut short at once and few tokens pass:
  // the mask first, then only those are sorted.
  constexpr size_t kFewNextBytes = 32;
  if (grammar_dead_ || grammar_state_.next_bytes(*grammar_).count() <= kFewNextBytes) build_mask();
  auto allows = [&](int32_t id) {
    if (mask.empty() && rejected >= kRejectionsBeforeMask) build_mask();
    if (!mask.empty()) return mask[static_cast<size_t>(id)] != 0;
    const bool ok = grammar_allows(id);
    rejected += !ok;
    return ok;
  };
  std::vector<Candidate> out;
  size_t sorted = 0, chunk = 32;
  for (size_t i = 0; i < c.size() && out.size() < want; ++i) {
    if (!mask.empty()) {
      // The whole mask is known: keep the allowed rest and sort only those
      // (where the grammar allows a few tokens, sorting the vocabulary to
      // find them cost more than the model's forward pass). The order is the
      // same total order, so the result is the same as going on one by one.
      std::vector<Candidate> rest;
      for (size_t j = i; j < c.size(); ++j)
        if (mask[static_cast<size_t>(c[j].id)] != 0) rest.push_back(c[j]);
      const size_t take = std::min(rest.size(), want - out.size());
      std::partial_sort(rest.begin(), rest.begin() + static_cast<ptrdiff_t>(take), rest.end(),
                        order);
      for (size_t j = 0; j < take; ++j) {
        if (min_p_ends && !out.empty() && rest[j].logit - out.front().logit < floor) break;
        out.push_back(rest[j]);
      }
      break;
    }
    if (i == sorted) {  // sort the next chunk lazily: most calls stop in the first
      const size_t end = std::min(c.size(), sorted + chunk);
      std::partial_sort(c.begin() + static_cast<ptrdiff_t>(sorted),
                        c.begin() + static_cast<ptrdiff_t>(end), c.end(), order);
      sorted = end;
      chunk *= 2;
    }
    if (min_p_ends && !out.empty() && c[i].logit - out.front().logit < floor) break;
    if (allows(c[i].id)) out.push_back(c[i]);
  }
  return out;
}

int32_t Sampler::no_allowed_token(const std::vector<float>& adjusted) const {
  if (!params_.stop_tokens.empty()) return params_.stop_tokens.front();
  return argmax(adjusted);
}

int32_t Sampler::greedy(const std::vector<float>& adj) const {
  const int32_t best = argmax(adj);
  if (!constrained() || grammar_allows(best)) return best;
  std::vector<Candidate> c;
  c.reserve(adj.size());
  for (size_t i = 0; i < adj.size(); ++i)
    if (adj[i] > kNegInf) c.push_back({adj[i], static_cast<int32_t>(i), 0.0});
  const std::vector<Candidate> allowed = allowed_in_order(std::move(c));
  return allowed.empty() ? no_allowed_token(adj) : allowed.front().id;
}

int32_t Sampler::argmax(const std::vector<float>& v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best] || (std::isnan(v[best]) && !std::isnan(v[i])))
      best = static_cast<int32_t>(i);
  return best;
}

std::vector<Sampler::Candidate> Sampler::distribution(const std::vector<float>& adj) const {
  std::vector<Candidate> c;
  if (params_.temperature <= 0) return c;
  c.reserve(adj.size());
  for (size_t i = 0; i < adj.size(); ++i)
    if (adj[i] > kNegInf)
      c.push_back({adj[i], static_cast<int32_t>(i), 0.0});  // drops -inf and NaN
  if (c.empty()) return c;

  const auto order = [](const Candidate& a, const Candidate& b) {
    return before(a.logit, a.id, b.logit, b.id);
  };
  const int k = params_.top_k;
  if (constrained()) {
    c = allowed_in_order(std::move(c));  // sorted, and cut to top_k already
    if (c.empty()) return c;
  } else if (k > 0 && static_cast<size_t>(k) < c.size()) {
    std::partial_sort(c.begin(), c.begin() + k, c.end(), order);
    c.resize(k);
  } else {
    std::sort(c.begin(), c.end(), order);
  }

  auto softmax = [&c](double inv_temp) {
    const double top = c.front().logit;
    double sum = 0;
    for (Candidate& x : c) sum += (x.p = std::exp((x.logit - top) * inv_temp));
    for (Candidate& x : c) x.p /= sum;
  };

  if (params_.top_p < 1.0f) {
    softmax(1.0);
    double cum = 0;
    size_t keep = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      cum += c[i].p;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    c.resize(keep);
  }

  if (params_.min_p > 0.0f) {
    // p_i >= min_p * p_max, written on logits: l_i - l_max >= log(min_p).
    const double floor = std::log(static_cast<double>(params_.min_p));
    const double top = c.front().logit;
    size_t keep = 1;
    while (keep < c.size() && c[keep].logit - top >= floor) ++keep;
    c.resize(keep);
  }

  softmax(1.0 / params_.temperature);
  return c;
}

int32_t Sampler::sample(const float* logits, int position) {
  const std::vector<float> adj = adjusted_logits(logits);
  const std::vector<Candidate> c = distribution(adj);
  if (c.empty()) return greedy(adj);  // greedy, or every token banned
  const double u = sampling_uniform(params_.seed, position, 0);
  double cum = 0;
  for (const Candidate& x : c) {
    cum += x.p;
    if (u < cum) return x.id;
  }
  return c.back().id;  // u landed in the rounding slack past the last sum
}

Judgement Sampler::judge(const float* logits, int32_t draft, const SparseProbs& q, int position) {
  if (params_.temperature <= 0) {
    const int32_t best = greedy(adjusted_logits(logits));
    return {best == draft, best};
  }
  const std::vector<float> p = probabilities(logits);
  const double u_accept = sampling_uniform(params_.seed, position, 1);
  const double u_resample = sampling_uniform(params_.seed, position, 2);
  return judge_draft(p, draft, q, u_accept, u_resample);
}

std::vector<float> Sampler::probabilities(const float* logits) const {
  const std::vector<float> adj = adjusted_logits(logits);
  std::vector<float> p(n_vocab_, 0.0f);
  const std::vector<Candidate> c = distribution(adj);
  if (c.empty()) {
    p[greedy(adj)] = 1.0f;
    return p;
  }
  for (const Candidate& x : c) p[x.id] = static_cast<float>(x.p);
  return p;
}

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (std::string& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::string StopMatcher::push(std::string_view piece) {
  if (stopped_) return "";
  held_ += piece;

  // The stop string that starts earliest (the shortest if several start there).
  size_t at = std::string::npos;
  const std::string* which = nullptr;
  for (const std::string& s : stops_) {
    const size_t pos = held_.find(s);
    if (pos == std::string::npos) continue;
    if (pos < at || (pos == at && s.size() < which->size())) {
      at = pos;
      which = &s;
    }
  }
  if (which != nullptr) {
    std::string out = held_.substr(0, at);
    held_.clear();
    stopped_ = true;
    matched_ = *which;
    return out;
  }

  // Hold back the longest suffix that a stop string begins with.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  keep = std::max(keep, unfinished_utf8_tail(held_));
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  if (stopped_) return "";
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace swarm
