#include "discovery/node_record.h"

#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <nlohmann/json.hpp>

namespace swarm::discovery {
namespace {

using nlohmann::json;

// Canonical encoding: big-endian fixed-width integers, u32-length-prefixed strings.
class Encoder {
 public:
  void u32(uint32_t v) {
    for (int i = 3; i >= 0; --i) out_.push_back(static_cast<char>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>(v >> (8 * i)));
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<uint64_t>(v)); }
  void str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void raw(const uint8_t* p, size_t n) { out_.append(reinterpret_cast<const char*>(p), n); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

const char* const kFields[] = {"protocol",      "node_id",      "public_key", "addresses",
                               "model_id",      "layer_begin",  "layer_end",  "throughput",
                               "free_kv_bytes", "price_per_1k", "issued_at",  "expires_at",
                               "signature"};

Status malformed(const std::string& why) { return Status::Corruption("node record: " + why); }
Status absurd(const std::string& why) { return Status::InvalidArgument("node record: " + why); }

Status valid_port(std::string_view port) {
  if (port.empty() || port.size() > 5 || (port.size() > 1 && port[0] == '0'))
    return absurd("bad port");
  int v = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return absurd("bad port");
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > 65535) return absurd("port out of range 1..65535");
  return Status::Ok();
}

}  // namespace

Status validate_address(const std::string& a) {
  const Status bad = absurd("address \"" + a.substr(0, 64) + "\" is not host:port");
  if (a.empty() || a.size() > kMaxAddressLength) return bad;
  std::string_view host, port;
  if (a[0] == '[') {
    const size_t close = a.find(']');
    if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':') return bad;
    host = std::string_view(a).substr(1, close - 1);
    port = std::string_view(a).substr(close + 2);
    if (host.empty()) return bad;
    for (char c : host)
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return bad;
  } else {
    const size_t colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0) return bad;
    host = std::string_view(a).substr(0, colon);
    port = std::string_view(a).substr(colon + 1);
    for (char c : host)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
        return bad;
  }
  if (!valid_port(port).ok()) return bad;
  return Status::Ok();
}

namespace {

bool finite_in(double v, double max) { return std::isfinite(v) && v >= 0 && v <= max; }

// Reads an integer field that must fit int64_t.
Result<int64_t> get_i64(const json& j, const char* name) {
  const json& v = j.at(name);
  if (!v.is_number_integer()) return malformed(std::string(name) + " is not an integer");
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return absurd(std::string(name) + " out of range");
    return static_cast<int64_t>(u);
  }
  return v.get<int64_t>();
}

Result<double> get_f64(const json& j, const char* name) {
  const json& v = j.at(name);
  if (!v.is_number()) return malformed(std::string(name) + " is not a number");
  return v.get<double>();
}

Result<std::string> get_str(const json& j, const char* name) {
  const json& v = j.at(name);
  if (!v.is_string()) return malformed(std::string(name) + " is not a string");
  return v.get<std::string>();
}

template <size_t N>
Result<std::array<uint8_t, N>> get_hex(const json& j, const char* name) {
  auto s = get_str(j, name);
  if (!s.ok()) return s.status();
  if (s->size() != 2 * N)
    return malformed(std::string(name) + " is not " + std::to_string(2 * N) + " hex digits");
  auto bytes = net::from_hex(*s);
  if (!bytes.ok()) return malformed(std::string(name) + ": " + bytes.status().message());
  std::array<uint8_t, N> out;
  std::memcpy(out.data(), bytes->data(), N);
  return out;
}

#define ASSIGN_OR_RETURN(lhs, expr)   \
  do {                                \
    auto _r = (expr);                 \
    if (!_r.ok()) return _r.status(); \
    lhs = std::move(_r.value());      \
  } while (0)

Result<NodeRecord> parse_and_verify_json(const std::string& wire, int64_t now) {
  if (wire.size() > kMaxWireBytes)
    return malformed("larger than " + std::to_string(kMaxWireBytes) + " bytes");
  const json j = json::parse(wire, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return malformed("not valid JSON");
  if (!j.is_object()) return malformed("not a JSON object");
  NodeRecord r;
  // The version decides which members exist and how they are signed, so it is
  // checked before anything else: a later version is "unsupported", not "corrupt".
  if (!j.contains("protocol")) return malformed("missing field protocol");
  ASSIGN_OR_RETURN(r.protocol, get_str(j, "protocol"));
  if (r.protocol != kProtocolVersion)
    return Status::Unsupported("node record: protocol version \"" + r.protocol.substr(0, 32) +
                               "\" is not " + std::string(kProtocolVersion));
  for (const char* f : kFields)
    if (!j.contains(f)) return malformed(std::string("missing field ") + f);
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* f : kFields) known = known || key == f;
    if (!known) return malformed("unknown field \"" + key.substr(0, 32) + "\"");
  }

  ASSIGN_OR_RETURN(r.node_id, get_str(j, "node_id"));
  ASSIGN_OR_RETURN(r.public_key, get_hex<net::kPublicKeyBytes>(j, "public_key"));
  net::Signature signature;
  ASSIGN_OR_RETURN(signature, get_hex<net::kSignatureBytes>(j, "signature"));
  const json& addrs = j.at("addresses");
  if (!addrs.is_array()) return malformed("addresses is not an array");
  if (addrs.size() > kMaxAddresses)
    return absurd("more than " + std::to_string(kMaxAddresses) + " addresses");
  for (const json& a : addrs) {
    if (!a.is_string()) return malformed("an address is not a string");
    r.addresses.push_back(a.get<std::string>());
  }
  ASSIGN_OR_RETURN(r.model_id, get_str(j, "model_id"));
  int64_t begin = 0, end = 0;
  ASSIGN_OR_RETURN(begin, get_i64(j, "layer_begin"));
  ASSIGN_OR_RETURN(end, get_i64(j, "layer_end"));
  if (begin < 0 || end > kMaxLayers || begin >= end)
    return absurd("layer range " + std::to_string(begin) + ":" + std::to_string(end) +
                  " is not 0 <= begin < end <= " + std::to_string(kMaxLayers));
  r.layer_begin = static_cast<int32_t>(begin);
  r.layer_end = static_cast<int32_t>(end);
  ASSIGN_OR_RETURN(r.throughput, get_f64(j, "throughput"));
  const json& kv = j.at("free_kv_bytes");
  if (!kv.is_number_unsigned()) return malformed("free_kv_bytes is not a non-negative integer");
  r.free_kv_bytes = kv.get<uint64_t>();
  ASSIGN_OR_RETURN(r.price_per_1k, get_f64(j, "price_per_1k"));
  ASSIGN_OR_RETURN(r.issued_at, get_i64(j, "issued_at"));
  ASSIGN_OR_RETURN(r.expires_at, get_i64(j, "expires_at"));

  if (r.node_id != net::node_id_of(r.public_key))
    return malformed("node id " + r.node_id.substr(0, 48) + " is not the public key's");
  if (!net::Identity::verify(r.public_key, canonical_bytes(r), signature))
    return malformed("bad signature");
  SWARM_RETURN_IF_ERROR(validate_record(r, now));
  return r;
}

}  // namespace

std::string canonical_bytes(const NodeRecord& r) {
  Encoder e;
  e.str(kRecordSigningContext);
  e.str(r.protocol);
  e.str(r.node_id);
  e.raw(r.public_key.data(), r.public_key.size());
  e.u32(static_cast<uint32_t>(r.addresses.size()));
  for (const std::string& a : r.addresses) e.str(a);
  e.str(r.model_id);
  e.i64(r.layer_begin);
  e.i64(r.layer_end);
  e.f64(r.throughput);
  e.u64(r.free_kv_bytes);
  e.f64(r.price_per_1k);
  e.i64(r.issued_at);
  e.i64(r.expires_at);
  return e.take();
}

std::string sign_record(const NodeRecord& record, const net::Identity& identity) {
  NodeRecord r = record;
  r.node_id = identity.node_id();
  r.public_key = identity.public_key();
  const net::Signature sig = identity.sign(canonical_bytes(r));
  json j = {
      {"protocol", r.protocol},
      {"node_id", r.node_id},
      {"public_key", net::to_hex(r.public_key.data(), r.public_key.size())},
      {"addresses", r.addresses},
      {"model_id", r.model_id},
      {"layer_begin", r.layer_begin},
      {"layer_end", r.layer_end},
      {"throughput", r.throughput},
      {"free_kv_bytes", r.free_kv_bytes},
      {"price_per_1k", r.price_per_1k},
      {"issued_at", r.issued_at},
      {"expires_at", r.expires_at},
      {"signature", net::to_hex(sig.data(), sig.size())},
  };
  // Invalid UTF-8 (which validate_record would refuse anyway) is replaced rather
  // than thrown on; such a record then fails its signature check at the reader.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Status validate_record(const NodeRecord& r, int64_t now) {
  if (r.protocol != kProtocolVersion)
    return Status::Unsupported("node record: protocol version \"" + r.protocol.substr(0, 32) +
                               "\" is not " + std::string(kProtocolVersion));
  if (r.addresses.empty()) return absurd("no addresses");
  if (r.addresses.size() > kMaxAddresses)
    return absurd("more than " + std::to_string(kMaxAddresses) + " addresses");
  for (const std::string& a : r.addresses) SWARM_RETURN_IF_ERROR(validate_address(a));
  if (r.model_id.empty() || r.model_id.size() > kMaxModelIdLength)
    return absurd("model id must be 1.." + std::to_string(kMaxModelIdLength) + " characters");
  for (char c : r.model_id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_' &&
        c != ':')
      return absurd("model id has a character outside [A-Za-z0-9._:-]");
  if (r.layer_begin < 0 || r.layer_end > kMaxLayers || r.layer_begin >= r.layer_end)
    return absurd("layer range " + std::to_string(r.layer_begin) + ":" +
                  std::to_string(r.layer_end) +
                  " is not 0 <= begin < end <= " + std::to_string(kMaxLayers));
  if (!finite_in(r.throughput, kMaxThroughput))
    return absurd("throughput is not a finite number in [0, 1e12]");
  if (!finite_in(r.price_per_1k, kMaxPrice))
    return absurd("price_per_1k is not a finite number in [0, 1e12]");

  if (r.issued_at < 0 || r.expires_at < 0) return absurd("negative time");
  if (r.expires_at <= r.issued_at) return absurd("expires_at is not after issued_at");
  if (r.expires_at - r.issued_at > kMaxLifetimeSeconds)
    return absurd("lifetime of " + std::to_string(r.expires_at - r.issued_at) + " s exceeds " +
                  std::to_string(kMaxLifetimeSeconds) + " s");
  if (now >= r.expires_at)
    return absurd("expired at " + std::to_string(r.expires_at) + ", now " + std::to_string(now));
  // 128-bit difference: `now` comes from the caller and may be anything.
  if (static_cast<__int128>(r.issued_at) - now > kMaxClockSkewSeconds)
    return absurd("issued in the future (" + std::to_string(r.issued_at) + ", now " +
                  std::to_string(now) + ")");
  return Status::Ok();
}

Result<NodeRecord> parse_and_verify(const std::string& wire, int64_t now) {
  // A peer's bytes never end in an exception: anything the JSON library throws
  // on (it should not, with the checks above) becomes a rejection.
  try {
    return parse_and_verify_json(wire, now);
  } catch (const std::exception& e) {
    return malformed(std::string("unreadable: ") + e.what());
  }
}

}  // namespace swarm::discovery
