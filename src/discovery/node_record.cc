#include "discovery/node_record.h"

#include "discovery/record_codec.h"

#include <cctype>
#include <exception>
#include <nlohmann/json.hpp>

namespace swarm::discovery {
namespace {

using nlohmann::json;

constexpr const char* kKind = "node record";

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

Result<NodeRecord> parse_and_verify_json(const std::string& wire, int64_t now) {
  auto j = parse_record_json(wire, kMaxWireBytes, kKind, kProtocolVersion);
  if (!j.ok()) return j.status();
  const RecordFields f(*j, kKind);
  SWARM_RETURN_IF_ERROR(f.exactly({"protocol", "node_id", "public_key", "addresses", "model_id",
                                   "layer_begin", "layer_end", "throughput", "free_kv_bytes",
                                   "price_per_1k", "issued_at", "expires_at", "signature"}));
  NodeRecord r;
  net::Signature signature;
  SWARM_ASSIGN_OR_RETURN(r.protocol, f.str("protocol"));
  SWARM_ASSIGN_OR_RETURN(r.node_id, f.str("node_id"));
  SWARM_ASSIGN_OR_RETURN(r.public_key, f.hex<net::kPublicKeyBytes>("public_key"));
  SWARM_ASSIGN_OR_RETURN(signature, f.hex<net::kSignatureBytes>("signature"));
  SWARM_ASSIGN_OR_RETURN(r.addresses, f.strings("addresses", kMaxAddresses));
  SWARM_ASSIGN_OR_RETURN(r.model_id, f.str("model_id"));
  int64_t begin = 0, end = 0;
  SWARM_ASSIGN_OR_RETURN(begin, f.i64("layer_begin"));
  SWARM_ASSIGN_OR_RETURN(end, f.i64("layer_end"));
  if (begin < 0 || end > kMaxLayers || begin >= end)
    return absurd("layer range " + std::to_string(begin) + ":" + std::to_string(end) +
                  " is not 0 <= begin < end <= " + std::to_string(kMaxLayers));
  r.layer_begin = static_cast<int32_t>(begin);
  r.layer_end = static_cast<int32_t>(end);
  SWARM_ASSIGN_OR_RETURN(r.throughput, f.f64("throughput"));
  SWARM_ASSIGN_OR_RETURN(r.free_kv_bytes, f.u64("free_kv_bytes"));
  SWARM_ASSIGN_OR_RETURN(r.price_per_1k, f.f64("price_per_1k"));
  SWARM_ASSIGN_OR_RETURN(r.issued_at, f.i64("issued_at"));
  SWARM_ASSIGN_OR_RETURN(r.expires_at, f.i64("expires_at"));
  SWARM_RETURN_IF_ERROR(
      verify_signer(kKind, r.node_id, r.public_key, canonical_bytes(r), signature));
  SWARM_RETURN_IF_ERROR(validate_record(r, now));
  return r;
}

}  // namespace

std::string canonical_bytes(const NodeRecord& r) {
  CanonicalEncoder e;
  encode_signer(e, kRecordSigningContext, r.protocol, r.node_id, r.public_key, r.addresses);
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
  return signed_wire({{"protocol", r.protocol},
                      {"addresses", r.addresses},
                      {"model_id", r.model_id},
                      {"layer_begin", r.layer_begin},
                      {"layer_end", r.layer_end},
                      {"throughput", r.throughput},
                      {"free_kv_bytes", r.free_kv_bytes},
                      {"price_per_1k", r.price_per_1k},
                      {"issued_at", r.issued_at},
                      {"expires_at", r.expires_at}},
                     identity, canonical_bytes(r));
}

Status validate_record(const NodeRecord& r, int64_t now) {
  SWARM_RETURN_IF_ERROR(validate_signer_fields(kKind, r.protocol, r.addresses));
  SWARM_RETURN_IF_ERROR(validate_content_id(kKind, "model id", r.model_id, 1));
  if (r.layer_begin < 0 || r.layer_end > kMaxLayers || r.layer_begin >= r.layer_end)
    return absurd("layer range " + std::to_string(r.layer_begin) + ":" +
                  std::to_string(r.layer_end) +
                  " is not 0 <= begin < end <= " + std::to_string(kMaxLayers));
  if (!finite_in(r.throughput, kMaxThroughput))
    return absurd("throughput is not a finite number in [0, 1e12]");
  if (!finite_in(r.price_per_1k, kMaxPrice))
    return absurd("price_per_1k is not a finite number in [0, 1e12]");

  return validate_time_window(kKind, r.issued_at, r.expires_at, now, kMaxLifetimeSeconds,
                              kMaxClockSkewSeconds);
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
