// The signed record a node announces into the DHT: who it is, where to reach it,
// which layers of which model it serves, how fast, with how much room, at what
// price, and until when the announcement holds. doc/dht-records.md specifies the
// format for other clients.
//
// A record is signed over its canonical bytes (fixed field order, length-prefixed
// strings, big-endian integers), never over JSON text; the JSON wire form only
// carries the fields and the signature. Everything here is pure: times are given
// by the caller, nothing reads a clock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "net/identity.h"

namespace swarm::discovery {

inline constexpr std::string_view kProtocolVersion = "swarm.v1";
// Prefix of the signed bytes, so a signature over a record can never be taken
// for a signature over anything else the same key signs.
inline constexpr std::string_view kRecordSigningContext = "swarm.node-record.v1";

// Reader's limits (doc/dht-records.md, "Validation").
inline constexpr int64_t kMaxClockSkewSeconds = 300;  // issued_at may be this far ahead
inline constexpr int64_t kMaxLifetimeSeconds = 3600;  // expires_at - issued_at
inline constexpr int64_t kMaxLayers = 1 << 20;        // layer_end at most this
inline constexpr size_t kMaxAddresses = 16;
inline constexpr size_t kMaxAddressLength = 262;  // "[" 253 "]:" 5 digits, rounded
inline constexpr size_t kMaxModelIdLength = 128;
inline constexpr size_t kMaxWireBytes = 16 * 1024;
inline constexpr double kMaxThroughput = 1e12;  // layer tokens/s
inline constexpr double kMaxPrice = 1e12;       // per 1k tokens

struct NodeRecord {
  std::string node_id;                 // node_id_of(public_key), 40 lowercase hex digits
  net::PublicKey public_key{};         // Ed25519
  std::vector<std::string> addresses;  // "host:port" or "[v6]:port", 1..kMaxAddresses
  std::string model_id;                // the model's content hash (net/model_id.h)
  int32_t layer_begin = 0;             // serves layers [layer_begin, layer_end)
  int32_t layer_end = 0;
  double throughput = 0;       // measured layer tokens/s: tokens/s x layers served
  uint64_t free_kv_bytes = 0;  // KV cache room free now
  double price_per_1k = 0;     // credits per 1000 tokens
  std::string protocol{kProtocolVersion};
  int64_t issued_at = 0;   // unix seconds
  int64_t expires_at = 0;  // unix seconds; invalid from this second on

  bool operator==(const NodeRecord&) const = default;
};

// The bytes a record's signature covers (doc/dht-records.md, "Canonical encoding").
// Injective: two records with different fields never encode alike.
std::string canonical_bytes(const NodeRecord& record);

// The record's wire form (JSON, doc/dht-records.md), signed by `identity`. The
// record's node_id and public_key are ignored and replaced by the identity's, so a
// node cannot sign a record that names someone else.
std::string sign_record(const NodeRecord& record, const net::Identity& identity);

// Whether `address` is one a record may carry: "host:port" with a DNS name or
// IPv4 host, or "[v6]:port", port 1..65535 without leading zeros
// (doc/dht-records.md, "Validation"). The error names the address.
Status validate_address(const std::string& address);

// The checks on a record's values and times that need no signature: protocol
// version, address and model id syntax, layer range, finite non-negative numbers,
// the time window at `now`. parse_and_verify applies them after the signature.
Status validate_record(const NodeRecord& record, int64_t now);

// Parses a wire record and accepts it only if it is well formed, its node id is
// its public key's, its signature holds, and validate_record passes at `now`.
// Rejections name the reason: kCorruption for malformed JSON, missing, unknown or
// wrong-typed fields, a node id that is not the key's, or a bad signature;
// kUnsupported for another protocol version; kInvalidArgument for absurd values or
// a record that is expired, issued too far in the future, or lives too long.
Result<NodeRecord> parse_and_verify(const std::string& wire, int64_t now);

}  // namespace swarm::discovery
