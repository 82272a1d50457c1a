#include "pipeline/admission.h"

#include <algorithm>
#include <cstdio>

namespace swarm {
namespace {

std::string seconds_text(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

AdmissionQueue::AdmissionQueue(AdmissionLimits limits) : limits_(limits) {}

bool AdmissionQueue::fits(uint64_t cost) const {
  if (static_cast<int>(active_.size()) >= std::max(1, limits_.max_active)) return false;
  return limits_.capacity == 0 || cost <= limits_.capacity - in_service_;
}

Result<AdmissionQueue::Arrival> AdmissionQueue::arrive(uint64_t cost, Clock::time_point now) {
  if (limits_.capacity > 0 && cost > limits_.capacity)
    return Status::InvalidArgument("the request needs " + std::to_string(cost) + " of " +
                                   std::to_string(limits_.capacity) +
                                   " units of capacity in all: it can never be served");
  Arrival a;
  a.ticket = next_ticket_++;
  if (queue_.empty() && fits(cost)) {
    active_[a.ticket] = cost;
    in_service_ += cost;
    a.admitted = true;
    return a;
  }
  if (static_cast<int>(queue_.size()) >= std::max(0, limits_.max_queue))
    return Status::ResourceExhausted("the server is busy: " + std::to_string(active_.size()) +
                                     " requests are being served and " +
                                     std::to_string(queue_.size()) +
                                     " wait, the most that may wait (--max-queue " +
                                     std::to_string(limits_.max_queue) + "); retry later");
  queue_.push_back({a.ticket, cost, now, now + limits_.queue_timeout});
  a.position = static_cast<int>(queue_.size());
  return a;
}

std::vector<AdmissionQueue::Ticket> AdmissionQueue::admit_waiting() {
  std::vector<Ticket> admitted;
  while (!queue_.empty() && fits(queue_.front().cost)) {
    const Waiting& w = queue_.front();
    active_[w.ticket] = w.cost;
    in_service_ += w.cost;
    admitted.push_back(w.ticket);
    queue_.pop_front();
  }
  return admitted;
}

std::vector<std::pair<AdmissionQueue::Ticket, Status>> AdmissionQueue::expire(
    Clock::time_point now) {
  std::vector<std::pair<Ticket, Status>> out;
  const int waiting_before = static_cast<int>(queue_.size());
  int position = 0;
  for (auto it = queue_.begin(); it != queue_.end();) {
    ++position;
    if (it->deadline > now) {
      ++it;
      continue;
    }
    out.emplace_back(
        it->ticket,
        Status::ResourceExhausted(
            "the server is busy: the request waited " + seconds_text(now - it->arrived) +
            " (--queue-timeout " + seconds_text(limits_.queue_timeout) + ") and was still number " +
            std::to_string(position) + " of " + std::to_string(waiting_before) +
            " in the queue, behind " + std::to_string(active_.size()) +
            " requests being served; retry later"));
    it = queue_.erase(it);
  }
  return out;
}

void AdmissionQueue::release(Ticket ticket) {
  auto it = active_.find(ticket);
  if (it == active_.end()) return;
  in_service_ -= it->second;
  active_.erase(it);
}

void AdmissionQueue::withdraw(Ticket ticket) {
  std::erase_if(queue_, [&](const Waiting& w) { return w.ticket == ticket; });
}

AdmissionQueue::Clock::time_point AdmissionQueue::next_deadline() const {
  Clock::time_point d = Clock::time_point::max();
  for (const Waiting& w : queue_) d = std::min(d, w.deadline);
  return d;
}

int AdmissionQueue::position(Ticket ticket) const {
  for (size_t i = 0; i < queue_.size(); ++i)
    if (queue_[i].ticket == ticket) return static_cast<int>(i) + 1;
  return 0;
}

}  // namespace swarm
