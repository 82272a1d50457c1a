#include "discovery/record_codec.h"

#include <cctype>

#include "discovery/node_record.h"

#include <limits>

namespace swarm::discovery {

using nlohmann::json;

void encode_signer(CanonicalEncoder& e, std::string_view context, const std::string& protocol,
                   const std::string& node_id, const net::PublicKey& public_key,
                   const std::vector<std::string>& addresses) {
  e.str(context);
  e.str(protocol);
  e.str(node_id);
  e.raw(public_key.data(), public_key.size());
  e.u32(static_cast<uint32_t>(addresses.size()));
  for (const std::string& a : addresses) e.str(a);
}

std::string signed_wire(json members, const net::Identity& signer, const std::string& canonical) {
  const net::Signature sig = signer.sign(canonical);
  members["node_id"] = signer.node_id();
  members["public_key"] = net::to_hex(signer.public_key().data(), signer.public_key().size());
  members["signature"] = net::to_hex(sig.data(), sig.size());
  // Invalid UTF-8 (which validation refuses anyway) is replaced rather than
  // thrown on; such a record then fails its signature check at the reader.
  return members.dump(-1, ' ', false, json::error_handler_t::replace);
}

Status RecordFields::exactly(std::initializer_list<const char*> fields) const {
  for (const char* f : fields)
    if (!j_.contains(f)) return malformed(std::string("missing field ") + f);
  for (const auto& [key, value] : j_.items()) {
    bool known = false;
    for (const char* f : fields) known = known || key == f;
    if (!known) return malformed("unknown field \"" + key.substr(0, 32) + "\"");
  }
  return Status::Ok();
}

Result<int64_t> RecordFields::i64(const char* name) const {
  const json& v = j_.at(name);
  if (!v.is_number_integer()) return malformed(std::string(name) + " is not an integer");
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return absurd(std::string(name) + " out of range");
    return static_cast<int64_t>(u);
  }
  return v.get<int64_t>();
}

Result<uint64_t> RecordFields::u64(const char* name) const {
  const json& v = j_.at(name);
  if (!v.is_number_unsigned())
    return malformed(std::string(name) + " is not a non-negative integer");
  return v.get<uint64_t>();
}

Result<double> RecordFields::f64(const char* name) const {
  const json& v = j_.at(name);
  if (!v.is_number()) return malformed(std::string(name) + " is not a number");
  return v.get<double>();
}

Result<bool> RecordFields::boolean(const char* name) const {
  const json& v = j_.at(name);
  if (!v.is_boolean()) return malformed(std::string(name) + " is not a boolean");
  return v.get<bool>();
}

Result<std::string> RecordFields::str(const char* name) const {
  const json& v = j_.at(name);
  if (!v.is_string()) return malformed(std::string(name) + " is not a string");
  return v.get<std::string>();
}

Result<std::vector<std::string>> RecordFields::strings(const char* name, size_t max_count) const {
  const json& v = j_.at(name);
  if (!v.is_array()) return malformed(std::string(name) + " is not an array");
  if (v.size() > max_count)
    return absurd("more than " + std::to_string(max_count) + " " + name);
  std::vector<std::string> out;
  for (const json& s : v) {
    if (!s.is_string()) return malformed(std::string("an entry of ") + name + " is not a string");
    out.push_back(s.get<std::string>());
  }
  return out;
}

Result<json> parse_record_json(const std::string& wire, size_t max_bytes, const std::string& kind,
                               std::string_view protocol) {
  auto malformed = [&kind](const std::string& why) { return Status::Corruption(kind + ": " + why); };
  if (wire.size() > max_bytes)
    return malformed("larger than " + std::to_string(max_bytes) + " bytes");
  json j = json::parse(wire, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return malformed("not valid JSON");
  if (!j.is_object()) return malformed("not a JSON object");
  if (!j.contains("protocol")) return malformed("missing field protocol");
  if (!j["protocol"].is_string()) return malformed("protocol is not a string");
  const std::string version = j["protocol"].get<std::string>();
  if (version != protocol)
    return Status::Unsupported(kind + ": protocol version \"" + version.substr(0, 32) +
                               "\" is not " + std::string(protocol));
  return j;
}

Status verify_signer(const std::string& kind, const std::string& node_id,
                     const net::PublicKey& public_key, const std::string& canonical,
                     const net::Signature& signature) {
  if (node_id != net::node_id_of(public_key))
    return Status::Corruption(kind + ": node id " + node_id.substr(0, 48) +
                              " is not the public key's");
  if (!net::Identity::verify(public_key, canonical, signature))
    return Status::Corruption(kind + ": bad signature");
  return Status::Ok();
}

Status validate_signer_fields(const std::string& kind, const std::string& protocol,
                              const std::vector<std::string>& addresses) {
  if (protocol != kProtocolVersion)
    return Status::Unsupported(kind + ": protocol version \"" + protocol.substr(0, 32) +
                               "\" is not " + std::string(kProtocolVersion));
  auto absurd = [&kind](const std::string& why) { return Status::InvalidArgument(kind + ": " + why); };
  if (addresses.empty()) return absurd("no addresses");
  if (addresses.size() > kMaxAddresses)
    return absurd("more than " + std::to_string(kMaxAddresses) + " addresses");
  for (const std::string& a : addresses)
    if (!validate_address(a).ok())
      return absurd("address \"" + a.substr(0, 64) + "\" is not host:port");
  return Status::Ok();
}

Status validate_content_id(const std::string& kind, const std::string& what,
                           const std::string& id, size_t min_length) {
  auto absurd = [&kind](const std::string& why) { return Status::InvalidArgument(kind + ": " + why); };
  if (id.size() < min_length || id.size() > kMaxModelIdLength)
    return absurd(what + " must be " + std::to_string(min_length) + ".." +
                  std::to_string(kMaxModelIdLength) + " characters");
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_' &&
        c != ':')
      return absurd(what + " has a character outside [A-Za-z0-9._:-]");
  return Status::Ok();
}

Status validate_time_window(const std::string& kind, int64_t issued_at, int64_t expires_at,
                            int64_t now, int64_t max_lifetime, int64_t max_skew) {
  auto absurd = [&kind](const std::string& why) { return Status::InvalidArgument(kind + ": " + why); };
  if (issued_at < 0 || expires_at < 0) return absurd("negative time");
  if (expires_at <= issued_at) return absurd("expires_at is not after issued_at");
  if (expires_at - issued_at > max_lifetime)
    return absurd("lifetime of " + std::to_string(expires_at - issued_at) + " s exceeds " +
                  std::to_string(max_lifetime) + " s");
  if (now >= expires_at)
    return absurd("expired at " + std::to_string(expires_at) + ", now " + std::to_string(now));
  // 128-bit difference: `now` comes from the caller and may be anything.
  if (static_cast<__int128>(issued_at) - now > max_skew)
    return absurd("issued in the future (" + std::to_string(issued_at) + ", now " +
                  std::to_string(now) + ")");
  return Status::Ok();
}

}  // namespace swarm::discovery
