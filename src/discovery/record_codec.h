// What the DHT's signed records (node records, skill records) share: the
// canonical encoding their signatures cover, and reading their JSON wire form
// field by field with rejections that name the record kind and the field.
// doc/dht-records.md, "Canonical encoding" and "Validation".
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "net/identity.h"

namespace swarm::discovery {

// Canonical encoding: big-endian fixed-width integers, u32-length-prefixed strings.
class CanonicalEncoder {
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

// The members every signed record starts with, in canonical order: the
// signing context, protocol, node id, public key and addresses.
void encode_signer(CanonicalEncoder& e, std::string_view context, const std::string& protocol,
                   const std::string& node_id, const net::PublicKey& public_key,
                   const std::vector<std::string>& addresses);

// The wire text of a record: `members` (its own fields, `protocol` and
// `addresses` among them) with the signer's node_id and public_key and the
// signature over `canonical`, which must encode the record as signed by it.
std::string signed_wire(nlohmann::json members, const net::Identity& signer,
                        const std::string& canonical);

// Reads one record's JSON object. Errors start with the record kind ("node
// record: ..."): kCorruption for what is malformed (wrong type, missing or
// unknown field), kInvalidArgument for a value out of range.
class RecordFields {
 public:
  RecordFields(const nlohmann::json& object, std::string kind)
      : j_(object), kind_(std::move(kind)) {}

  Status malformed(const std::string& why) const { return Status::Corruption(kind_ + ": " + why); }
  Status absurd(const std::string& why) const {
    return Status::InvalidArgument(kind_ + ": " + why);
  }

  // Every field of `fields` present and no other.
  Status exactly(std::initializer_list<const char*> fields) const;

  Result<int64_t> i64(const char* name) const;
  Result<uint64_t> u64(const char* name) const;  // a non-negative integer
  Result<double> f64(const char* name) const;
  Result<bool> boolean(const char* name) const;
  Result<std::string> str(const char* name) const;
  Result<std::vector<std::string>> strings(const char* name, size_t max_count) const;
  template <size_t N>
  Result<std::array<uint8_t, N>> hex(const char* name) const {
    auto s = str(name);
    if (!s.ok()) return s.status();
    if (s->size() != 2 * N)
      return malformed(std::string(name) + " is not " + std::to_string(2 * N) + " hex digits");
    auto bytes = net::from_hex(*s);
    if (!bytes.ok()) return malformed(std::string(name) + ": " + bytes.status().message());
    std::array<uint8_t, N> out;
    std::memcpy(out.data(), bytes->data(), N);
    return out;
  }

 private:
  const nlohmann::json& j_;
  const std::string kind_;
};

// A record's wire text as a JSON object, checked for size and protocol version
// first: the version decides which members exist and how they are signed, so
// a later version is kUnsupported, not corrupt.
Result<nlohmann::json> parse_record_json(const std::string& wire, size_t max_bytes,
                                         const std::string& kind, std::string_view protocol);

// The record's node id is its public key's and `signature` holds over
// `canonical` (kCorruption otherwise).
Status verify_signer(const std::string& kind, const std::string& node_id,
                     const net::PublicKey& public_key, const std::string& canonical,
                     const net::Signature& signature);

// The members every signed record starts with, as a reader checks them: the
// protocol version (kUnsupported for another) and 1..kMaxAddresses addresses
// that validate_address accepts (kInvalidArgument). `kind` starts the error.
Status validate_signer_fields(const std::string& kind, const std::string& protocol,
                              const std::vector<std::string>& addresses);

// A model's content id (net/model_id.h) as records carry it: at most
// kMaxModelIdLength characters of [A-Za-z0-9._:-], at least `min_length`.
// `what` names the field in the error ("model id").
Status validate_content_id(const std::string& kind, const std::string& what,
                           const std::string& id, size_t min_length);

// The checks on a signed record's time window at `now` (doc/dht-records.md,
// "Validation"): non-negative, expiring after it is issued, living at most
// max_lifetime, not yet expired, not issued more than max_skew ahead.
// `kind` starts the error ("node record").
Status validate_time_window(const std::string& kind, int64_t issued_at, int64_t expires_at,
                            int64_t now, int64_t max_lifetime, int64_t max_skew);

// `v` is finite and within [0, max].
inline bool finite_in(double v, double max) { return v == v && v >= 0 && v <= max; }

#define SWARM_ASSIGN_OR_RETURN(lhs, expr) \
  do {                                    \
    auto _r = (expr);                     \
    if (!_r.ok()) return _r.status();     \
    lhs = std::move(_r.value());          \
  } while (0)

}  // namespace swarm::discovery
