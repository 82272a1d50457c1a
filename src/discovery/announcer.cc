#include "discovery/announcer.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace swarm::discovery {

Announcer::Announcer(DhtNode& dht, const net::Identity& identity, RecordSource current,
                     std::chrono::seconds interval)
    : Announcer(
          [&dht, &identity, current = std::move(current)](int64_t issued_at, int64_t expires_at) {
            NodeRecord r = current();
            r.issued_at = issued_at;
            r.expires_at = expires_at;
            return dht.announce(r, sign_record(r, identity));
          },
          interval) {}

Announcer::Announcer(Put put, std::chrono::seconds interval)
    : put_(std::move(put)), interval_(interval) {
  first_status_ = announce_now();
  thread_ = std::thread([this] { loop(); });
}

Announcer::~Announcer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status Announcer::announce_now() { return put_record(false); }

Status Announcer::withdraw() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  return put_record(true);
}

void Announcer::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, interval_, [&] { return stopped_; })) {
    lock.unlock();
    Status st = put_record(false);
    if (!st.ok()) spdlog::warn("re-announcing: {}", st.message());
    lock.lock();
  }
}

Status Announcer::put_record(bool withdrawal) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopped_ && !withdrawal) return Status::Ok();
  // Strictly increasing, so a record put later is always the newer one, even
  // within one second (a move right after an announcement).
  const int64_t issued_at = std::max(unix_now(), last_issued_at_ + 1);
  last_issued_at_ = issued_at;
  const int64_t lifetime = std::min<int64_t>(3 * interval_.count(), kMaxLifetimeSeconds);
  return put_(issued_at, issued_at + (withdrawal ? 1 : std::max<int64_t>(lifetime, 2)));
}

}  // namespace swarm::discovery
