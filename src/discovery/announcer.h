// Keeps a node's signed records in the DHT while the node serves: signs fresh
// records every `interval` (valid for three intervals, so one lost put does
// not make the node vanish), at once when what it serves changes (a move, a
// price that moved), and a withdrawal when it drains. Node records (layers)
// and skill records (whole models) are announced alike.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "discovery/dht_node.h"
#include "discovery/node_record.h"
#include "net/identity.h"

namespace swarm::discovery {

class Announcer {
 public:
  // What the node serves now: every field but node_id, public_key, issued_at
  // and expires_at, which the announcer fills in. Called from its thread.
  using RecordSource = std::function<NodeRecord()>;
  // Signs what the node serves now with these times and puts it in the DHT
  // (any kind of record, any number of them). Called from the announcer's thread.
  using Put = std::function<Status(int64_t issued_at, int64_t expires_at)>;

  // `dht` and `identity` must outlive the announcer. Announces once before
  // returning (the status says whether that put succeeded; the loop keeps
  // trying either way), then every `interval`.
  Announcer(DhtNode& dht, const net::Identity& identity, RecordSource current,
            std::chrono::seconds interval);
  // The same for any records: `put` signs and puts them.
  Announcer(Put put, std::chrono::seconds interval);
  ~Announcer();  // stops the loop; announces nothing more (no withdrawal)
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

  // The first put's outcome.
  const Status& first_status() const { return first_status_; }
  // Signs and puts a record of what the node serves now, e.g. after a move.
  Status announce_now();
  // Stops re-announcing and puts a record that expires a second after it is
  // issued; being the node's newest, it hides the older ones from readers
  // (select_records) within that second.
  Status withdraw();

 private:
  void loop();
  Status put_record(bool withdrawal);

  const Put put_;
  const std::chrono::seconds interval_;
  std::mutex mu_;  // guards last_issued_at_, stopped_; serialises puts
  std::condition_variable cv_;
  int64_t last_issued_at_ = 0;
  bool stopped_ = false;
  Status first_status_;
  std::thread thread_;
};

}  // namespace swarm::discovery
