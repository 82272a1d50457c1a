// A node of the swarm's DHT (OpenDHT, Kademlia over UDP): announces signed node
// records under their model's key and reads them back, keeping only records that
// verify. doc/dht-records.md, "DHT transport", specifies keys and values for
// other clients.
//
// Keys (OpenDHT hashes each string with SHA-1 into an InfoHash):
//   swarm.v1/model/<model id>  values: wire node records (node_record.h)
//   swarm.v1/models            values: model announcements (JSON, unsigned hints)
//   swarm.v1/skill/<skill>     values: wire skill records (skill_record.h)
//   swarm.v1/skills            values: {"skill": NAME} (unsigned hints of which skills exist)
// Any DHT node stores and serves values; a node that only does that is a
// bootstrap peer (`swarm dht`).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "discovery/node_record.h"
#include "discovery/skill_record.h"
#include "engine/status.h"

namespace swarm::discovery {

inline constexpr std::string_view kModelsKey = "swarm.v1/models";
inline constexpr std::string_view kSkillsKey = "swarm.v1/skills";
// "swarm.v1/skill/<skill name>": where the records of a skill's providers live.
std::string skill_key(std::string_view skill);
// "swarm.v1/model/<model_id>": where the records of a model's nodes live.
std::string model_key(std::string_view model_id);

// Our swarm's OpenDHT network id: nodes of other OpenDHT networks (the public
// one is 0) neither answer nor store for us.
inline constexpr uint32_t kDhtNetworkId = 0x53574d31;  // "SWM1"

struct DhtOptions {
  std::string listen = "127.0.0.1:0";  // IPv4 HOST:PORT to bind (UDP); port 0: any
  std::vector<std::string> bootstrap;  // HOST:PORT of DHT nodes to join through (names resolved)
};

// What the swarm.v1/models key carries: which models have nodes, with enough to
// say which layers are missing. Unsigned, so a hint only: records are the truth.
struct ModelAnnouncement {
  std::string model_id;
  int n_layer = 0;
  std::string name;
  bool operator==(const ModelAnnouncement&) const = default;
};
std::string encode_model_announcement(const ModelAnnouncement& a);
Result<ModelAnnouncement> decode_model_announcement(std::string_view text);

// Why values read under a model key were not used.
struct RejectCounts {
  size_t corrupt = 0;      // malformed, or a signature that does not hold (forged)
  size_t unsupported = 0;  // another protocol version
  size_t invalid = 0;      // absurd values, expired, or issued too far ahead
  size_t other_model = 0;  // verifies, but names another model than its key
  size_t superseded = 0;   // valid, but the same node has a newer record
  size_t total() const { return corrupt + unsupported + invalid + other_model + superseded; }
};

template <class Record>
struct Lookup {
  std::vector<Record> records;  // one per node: its newest valid record, by node id
  RejectCounts rejected;
};
using RecordLookup = Lookup<NodeRecord>;
using SkillLookup = Lookup<SkillRecord>;

// Pure: of the values read under model_key(model_id), the records that verify at
// `now`, name `model_id`, and are their node's newest authentic record (highest
// issued_at; a tie goes to the earlier expiry). A node whose newest authentic
// record is no longer valid (a withdrawal, which expires a second after it is
// issued, or a node that stopped announcing) has no record at all: its older
// ones stay superseded. Everything not returned is counted once.
RecordLookup select_records(const std::vector<std::string>& values, const std::string& model_id,
                            int64_t now);

// select_records' rule for the values under skill_key(skill): each provider's
// newest authentic record of that skill, if it is valid at `now`.
SkillLookup select_skill_records(const std::vector<std::string>& values, const std::string& skill,
                                 int64_t now);

class DhtNode {
 public:
  // Binds, starts the DHT's thread and, if any are given, contacts the
  // bootstrap peers. InvalidArgument for a listen that is not an IPv4
  // HOST:PORT, or a bootstrap whose host is neither IPv4 nor a name that
  // resolves to IPv4; IOError if the port cannot be bound.
  static Result<std::unique_ptr<DhtNode>> Start(const DhtOptions& options);
  ~DhtNode();  // leaves the DHT and joins its threads
  DhtNode(const DhtNode&) = delete;
  DhtNode& operator=(const DhtNode&) = delete;

  // "127.0.0.1:PORT" as bound.
  std::string address() const;
  // Whether the routing table holds at least one peer that answered.
  bool connected() const;

  // Stores `value` under `key` on the DHT nodes closest to it; Ok once at least
  // one stored it. Peers keep a value 10 minutes (OpenDHT's default); a
  // record's own expires_at is what readers obey, so announcers put again
  // well before either runs out.
  Status put(const std::string& key, const std::string& value,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Every value stored under `key`, as found by a complete search or by
  // `timeout` (DeadlineExceeded only if nothing came back by then and the
  // search did not end).
  Result<std::vector<std::string>> get(
      const std::string& key, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Announces: puts a wire record under model_key(record.model_id).
  Status announce(const NodeRecord& record, const std::string& wire);
  // The valid records of `model_id` at `now` (select_records over get()).
  Result<RecordLookup> find_nodes(const std::string& model_id, int64_t now);
  Status announce_model(const ModelAnnouncement& model);
  // Puts a wire skill record under skill_key(record.skill), and the skill's
  // name under kSkillsKey.
  Status announce_skill(const SkillRecord& record, const std::string& wire);
  // The valid provider records of `skill` at `now`.
  Result<SkillLookup> find_skill(const std::string& skill, int64_t now);
  // The skill names announced (valid names only, sorted, at most `max_names`).
  Result<std::vector<std::string>> find_skill_names(size_t max_names = 4096);
  // Models announced, one entry per model id (the largest n_layer wins a
  // disagreement); undecodable values are skipped.
  Result<std::vector<ModelAnnouncement>> find_models();

 private:
  struct Impl;
  explicit DhtNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Unix seconds now: the one clock reading records need, kept out of the pure code.
int64_t unix_now();

}  // namespace swarm::discovery
