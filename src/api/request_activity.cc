#include "api/request_activity.h"

#include <algorithm>

namespace swarm {

RequestActivity::RequestActivity(size_t keep_ended, TokenRate rate)
    : keep_ended_(keep_ended),
      rate_bucket_seconds_(rate.bucket_seconds()),
      rate_(std::move(rate)) {}

void RequestActivity::begin(const std::string& id, const std::string& model, int prompt_tokens,
                            Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  Live& l = live_[id];
  l.view = RequestView{};
  l.view.id = id;
  l.view.model = model;
  l.view.prompt_tokens = prompt_tokens;
  l.began = now;
  l.order = next_order_++;
}

void RequestActivity::route(const std::string& id, const std::vector<ChainStage>& chain) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end()) return;
  it->second.view.chain = chain;
  ++it->second.view.chains;
}

void RequestActivity::token(const std::string& id, Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end()) return;
  ++it->second.view.completion_tokens;
  rate_.add(1, now);
}

void RequestActivity::end(const std::string& id, const std::string& outcome,
                          Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(id);
  if (it == live_.end()) return;
  RequestView v = std::move(it->second.view);
  v.live = false;
  v.outcome = outcome;
  v.seconds = std::chrono::duration<double>(now - it->second.began).count();
  live_.erase(it);
  if (keep_ended_ == 0) return;
  ended_.push_front(std::move(v));
  while (ended_.size() > keep_ended_) ended_.pop_back();
}

std::vector<RequestView> RequestActivity::requests(Clock::time_point now, size_t max_live) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<const Live*> live;
  for (const auto& [id, l] : live_) live.push_back(&l);
  std::sort(live.begin(), live.end(),
            [](const Live* a, const Live* b) { return a->order < b->order; });
  if (live.size() > max_live) live.resize(max_live);
  std::vector<RequestView> out;
  for (const Live* l : live) {
    out.push_back(l->view);
    out.back().seconds = std::chrono::duration<double>(now - l->began).count();
  }
  out.insert(out.end(), ended_.begin(), ended_.end());
  return out;
}

size_t RequestActivity::live_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_.size();
}

std::vector<double> RequestActivity::rates(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  return rate_.rates(now);
}

}  // namespace swarm
