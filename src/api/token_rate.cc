#include "api/token_rate.h"

#include <algorithm>

namespace swarm {

TokenRate::TokenRate(std::chrono::milliseconds bucket, size_t buckets)
    : bucket_(std::max(bucket, std::chrono::milliseconds(1))),
      ring_(std::max<size_t>(buckets, 1)) {}

int64_t TokenRate::index_of(Clock::time_point t) const {
  const auto since = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  // Floor division, so times before the clock's epoch fall in their own buckets too.
  int64_t q = since.count() / bucket_.count();
  if (since.count() % bucket_.count() < 0) --q;
  return q;
}

TokenRate::Slot& TokenRate::slot(int64_t index) {
  const auto n = static_cast<int64_t>(ring_.size());
  return ring_[static_cast<size_t>(((index % n) + n) % n)];
}

const TokenRate::Slot& TokenRate::slot(int64_t index) const {
  return const_cast<TokenRate*>(this)->slot(index);
}

void TokenRate::add(int64_t tokens, Clock::time_point now) {
  const int64_t index = index_of(now);
  Slot& s = slot(index);
  if (s.index > index) return;  // older than the ring holds
  if (s.index != index) s = {index, 0};
  s.tokens += tokens;
}

std::vector<double> TokenRate::rates(Clock::time_point now) const {
  const int64_t current = index_of(now);
  const auto n = static_cast<int64_t>(ring_.size());
  std::vector<double> out;
  out.reserve(ring_.size());
  for (int64_t index = current - n; index < current; ++index) {
    const Slot& s = slot(index);
    out.push_back(s.index == index ? static_cast<double>(s.tokens) / bucket_seconds() : 0.0);
  }
  return out;
}

}  // namespace swarm
