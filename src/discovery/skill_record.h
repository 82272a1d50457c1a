// The signed record a skill provider announces into the DHT: a whole
// capability ("kjv-target" text generation, an embedding model, an image
// model) that it serves behind an OpenAI-compatible HTTP endpoint, at a price,
// with its capacity, load and measured speed now. Signed like node records
// (discovery/node_record.h, same identity and encoding rules);
// doc/dht-records.md, "Skill records", specifies the format.
//
// Pure: times are given by the caller.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "discovery/node_record.h"
#include "engine/status.h"
#include "net/identity.h"

namespace swarm::discovery {

inline constexpr std::string_view kSkillSigningContext = "swarm.skill-record.v1";

inline constexpr size_t kMaxSkillNameLength = 128;
inline constexpr size_t kMaxSkillTasks = 8;
inline constexpr int64_t kMaxSkillCapacity = 1 << 20;  // concurrent requests, queue length
inline constexpr double kMaxTokenRate = 1e9;           // tokens/s
inline constexpr double kMaxSeconds = 1e6;             // time to first token

// What a skill answers, by OpenAI route.
inline constexpr std::string_view kTaskChat = "chat";                // /v1/chat/completions
inline constexpr std::string_view kTaskCompletions = "completions";  // /v1/completions
inline constexpr std::string_view kTaskEmbeddings = "embeddings";    // /v1/embeddings
inline constexpr std::string_view kTaskImages = "images";            // /v1/images/generations
// The OpenAI route that answers `task` ("/v1/chat/completions"), "" for no task.
inline std::string_view route_of_task(std::string_view task) {
  if (task == kTaskChat) return "/v1/chat/completions";
  if (task == kTaskCompletions) return "/v1/completions";
  if (task == kTaskEmbeddings) return "/v1/embeddings";
  if (task == kTaskImages) return "/v1/images/generations";
  return "";
}

struct SkillRecord {
  std::string node_id;                 // node_id_of(public_key)
  net::PublicKey public_key{};         // Ed25519
  std::vector<std::string> addresses;  // HTTP "host:port" of the provider's endpoint, 1..16
  std::string skill;                   // the model name users ask for: [A-Za-z0-9._:/@+-], 1..128
  std::vector<std::string> tasks;      // kTask* values, 1..8, no repeats
  // The model's content hash (net/model_id.h) where the provider could compute
  // it (our engine: always), else "". Two providers with the same content id
  // serve the same weights.
  std::string content_id;
  // Served by SwarmInfer's engine: greedy output is bit-exact, so a stream cut
  // off on one such provider continues exactly on another of the same
  // content id (doc/http-api.md, "Resuming a completion elsewhere").
  bool engine = false;
  double price_per_1k = 0;     // credits per 1000 tokens (prompt + completion), as announced now
  double price_per_image = 0;  // credits per image
  int64_t capacity = 0;        // requests served at once, >= 1
  int64_t active = 0;          // being served now
  int64_t queued = 0;          // waiting now
  double tokens_per_second = 0;  // measured decode speed per stream; 0: not measured
  double ttft_seconds = 0;       // measured time to first token; 0: not measured
  bool warm = false;             // the provider's backend answered its last request or probe
  int64_t recent_failures = 0;   // backend failures in the provider's last window
  std::string protocol{kProtocolVersion};
  int64_t issued_at = 0;
  int64_t expires_at = 0;

  bool operator==(const SkillRecord&) const = default;
};

// The bytes a skill record's signature covers: injective, and prefixed with
// kSkillSigningContext so it can never pass for a node record's.
std::string canonical_bytes(const SkillRecord& record);

// The record's members as its wire form has them, without the signer's
// (node_id, public_key, signature): for listings such as `swarm status`.
nlohmann::json skill_record_members(const SkillRecord& record);

// The wire form (JSON), signed by `identity` (its node id and key replace the record's).
std::string sign_skill_record(const SkillRecord& record, const net::Identity& identity);

// Values and time window, without the signature (doc/dht-records.md, "Skill records").
Status validate_skill_record(const SkillRecord& record, int64_t now);

// A skill name users may ask for: 1..128 of [A-Za-z0-9._:/@+-]. The error names it.
Status validate_skill_name(std::string_view name);

// Parses and accepts a wire skill record as parse_and_verify does a node record:
// kCorruption (malformed, forged), kUnsupported (another version),
// kInvalidArgument (absurd values, outside its time window).
Result<SkillRecord> parse_and_verify_skill(const std::string& wire, int64_t now);

}  // namespace swarm::discovery
