#include "discovery/skill_record.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <nlohmann/json.hpp>

#include "discovery/record_codec.h"

namespace swarm::discovery {
namespace {

using nlohmann::json;

constexpr const char* kKind = "skill record";

Status absurd(const std::string& why) { return Status::InvalidArgument("skill record: " + why); }

bool known_task(std::string_view t) {
  return t == kTaskChat || t == kTaskCompletions || t == kTaskEmbeddings || t == kTaskImages;
}

Result<SkillRecord> parse_and_verify_json(const std::string& wire, int64_t now) {
  auto j = parse_record_json(wire, kMaxWireBytes, kKind, kProtocolVersion);
  if (!j.ok()) return j.status();
  const RecordFields f(*j, kKind);
  SWARM_RETURN_IF_ERROR(f.exactly({"protocol", "node_id", "public_key", "addresses", "skill",
                                   "tasks", "content_id", "engine", "price_per_1k",
                                   "price_per_image", "capacity", "active", "queued",
                                   "tokens_per_second", "ttft_seconds", "warm",
                                   "recent_failures", "issued_at", "expires_at", "signature"}));
  SkillRecord r;
  net::Signature signature;
  SWARM_ASSIGN_OR_RETURN(r.protocol, f.str("protocol"));
  SWARM_ASSIGN_OR_RETURN(r.node_id, f.str("node_id"));
  SWARM_ASSIGN_OR_RETURN(r.public_key, f.hex<net::kPublicKeyBytes>("public_key"));
  SWARM_ASSIGN_OR_RETURN(signature, f.hex<net::kSignatureBytes>("signature"));
  SWARM_ASSIGN_OR_RETURN(r.addresses, f.strings("addresses", kMaxAddresses));
  SWARM_ASSIGN_OR_RETURN(r.skill, f.str("skill"));
  SWARM_ASSIGN_OR_RETURN(r.tasks, f.strings("tasks", kMaxSkillTasks));
  SWARM_ASSIGN_OR_RETURN(r.content_id, f.str("content_id"));
  SWARM_ASSIGN_OR_RETURN(r.engine, f.boolean("engine"));
  SWARM_ASSIGN_OR_RETURN(r.price_per_1k, f.f64("price_per_1k"));
  SWARM_ASSIGN_OR_RETURN(r.price_per_image, f.f64("price_per_image"));
  SWARM_ASSIGN_OR_RETURN(r.capacity, f.i64("capacity"));
  SWARM_ASSIGN_OR_RETURN(r.active, f.i64("active"));
  SWARM_ASSIGN_OR_RETURN(r.queued, f.i64("queued"));
  SWARM_ASSIGN_OR_RETURN(r.tokens_per_second, f.f64("tokens_per_second"));
  SWARM_ASSIGN_OR_RETURN(r.ttft_seconds, f.f64("ttft_seconds"));
  SWARM_ASSIGN_OR_RETURN(r.warm, f.boolean("warm"));
  SWARM_ASSIGN_OR_RETURN(r.recent_failures, f.i64("recent_failures"));
  SWARM_ASSIGN_OR_RETURN(r.issued_at, f.i64("issued_at"));
  SWARM_ASSIGN_OR_RETURN(r.expires_at, f.i64("expires_at"));
  SWARM_RETURN_IF_ERROR(
      verify_signer(kKind, r.node_id, r.public_key, canonical_bytes(r), signature));
  SWARM_RETURN_IF_ERROR(validate_skill_record(r, now));
  return r;
}

}  // namespace

Status validate_skill_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxSkillNameLength)
    return absurd("skill name must be 1.." + std::to_string(kMaxSkillNameLength) + " characters");
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("._:/@+-").find(c) ==
                                                             std::string_view::npos)
      return absurd("skill name \"" + std::string(name.substr(0, 64)) +
                    "\" has a character outside [A-Za-z0-9._:/@+-]");
  return Status::Ok();
}

std::string canonical_bytes(const SkillRecord& r) {
  CanonicalEncoder e;
  encode_signer(e, kSkillSigningContext, r.protocol, r.node_id, r.public_key, r.addresses);
  e.str(r.skill);
  e.u32(static_cast<uint32_t>(r.tasks.size()));
  for (const std::string& t : r.tasks) e.str(t);
  e.str(r.content_id);
  e.u32(r.engine ? 1 : 0);
  e.f64(r.price_per_1k);
  e.f64(r.price_per_image);
  e.i64(r.capacity);
  e.i64(r.active);
  e.i64(r.queued);
  e.f64(r.tokens_per_second);
  e.f64(r.ttft_seconds);
  e.u32(r.warm ? 1 : 0);
  e.i64(r.recent_failures);
  e.i64(r.issued_at);
  e.i64(r.expires_at);
  return e.take();
}

nlohmann::json skill_record_members(const SkillRecord& r) {
  return {{"protocol", r.protocol},
          {"addresses", r.addresses},
          {"skill", r.skill},
          {"tasks", r.tasks},
          {"content_id", r.content_id},
          {"engine", r.engine},
          {"price_per_1k", r.price_per_1k},
          {"price_per_image", r.price_per_image},
          {"capacity", r.capacity},
          {"active", r.active},
          {"queued", r.queued},
          {"tokens_per_second", r.tokens_per_second},
          {"ttft_seconds", r.ttft_seconds},
          {"warm", r.warm},
          {"recent_failures", r.recent_failures},
          {"issued_at", r.issued_at},
          {"expires_at", r.expires_at}};
}

std::string sign_skill_record(const SkillRecord& record, const net::Identity& identity) {
  SkillRecord r = record;
  r.node_id = identity.node_id();
  r.public_key = identity.public_key();
  return signed_wire(skill_record_members(r), identity, canonical_bytes(r));
}

Status validate_skill_record(const SkillRecord& r, int64_t now) {
  SWARM_RETURN_IF_ERROR(validate_signer_fields(kKind, r.protocol, r.addresses));
  SWARM_RETURN_IF_ERROR(validate_skill_name(r.skill));
  if (r.tasks.empty() || r.tasks.size() > kMaxSkillTasks)
    return absurd("tasks must list 1.." + std::to_string(kMaxSkillTasks) + " tasks");
  for (size_t i = 0; i < r.tasks.size(); ++i) {
    if (!known_task(r.tasks[i]))
      return absurd("unknown task \"" + r.tasks[i].substr(0, 32) +
                    "\" (chat, completions, embeddings, images)");
    if (std::find(r.tasks.begin(), r.tasks.begin() + static_cast<ptrdiff_t>(i), r.tasks[i]) !=
        r.tasks.begin() + static_cast<ptrdiff_t>(i))
      return absurd("task \"" + r.tasks[i] + "\" is listed twice");
  }
  SWARM_RETURN_IF_ERROR(validate_content_id(kKind, "content id", r.content_id, 0));
  if (!finite_in(r.price_per_1k, kMaxPrice) || !finite_in(r.price_per_image, kMaxPrice))
    return absurd("a price is not a finite number in [0, 1e12]");
  if (r.capacity < 1 || r.capacity > kMaxSkillCapacity)
    return absurd("capacity " + std::to_string(r.capacity) + " is not in 1.." +
                  std::to_string(kMaxSkillCapacity));
  for (int64_t v : {r.active, r.queued, r.recent_failures})
    if (v < 0 || v > kMaxSkillCapacity)
      return absurd("active, queued and recent_failures must be in 0.." +
                    std::to_string(kMaxSkillCapacity));
  if (!finite_in(r.tokens_per_second, kMaxTokenRate))
    return absurd("tokens_per_second is not a finite number in [0, 1e9]");
  if (!finite_in(r.ttft_seconds, kMaxSeconds))
    return absurd("ttft_seconds is not a finite number in [0, 1e6]");
  return validate_time_window(kKind, r.issued_at, r.expires_at, now, kMaxLifetimeSeconds,
                              kMaxClockSkewSeconds);
}

Result<SkillRecord> parse_and_verify_skill(const std::string& wire, int64_t now) {
  try {
    return parse_and_verify_json(wire, now);
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("skill record: unreadable: ") + e.what());
  }
}

}  // namespace swarm::discovery
