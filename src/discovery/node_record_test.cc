// Signed node records: a record signed by its node reads back unchanged, and a
// record that is forged, signed by someone else, expired, early, too long-lived,
// malformed or absurd is refused with its reason named. Random damage to a wire
// record never crashes the reader and never yields fields that were not signed.
#include "discovery/node_record.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "net/test_identity.h"

namespace swarm::discovery {
namespace {

using net::identity_from;

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'000;

bool j_is_string_field(const std::string& f) {
  return f == "node_id" || f == "public_key" || f == "model_id" || f == "signature" ||
         f == "protocol";
}

class NodeRecordTest : public ::testing::Test {
 protected:
  NodeRecordTest() : a_(identity_from(1)), b_(identity_from(2)) {
    rec_.addresses = {"10.0.0.7:7001", "node-7.example.org:7001", "[2001:db8::7]:443"};
    rec_.model_id = "3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e";
    rec_.layer_begin = 8;
    rec_.layer_end = 16;
    rec_.throughput = 1234.5678;
    rec_.free_kv_bytes = (1ull << 63) + 12345;  // beyond int64: the full range travels
    rec_.price_per_1k = 0.1;
    rec_.issued_at = kNow - 10;
    rec_.expires_at = kNow + 600;
    signed_ = rec_;
    signed_.node_id = a_.node_id();
    signed_.public_key = a_.public_key();
  }

  // `r` signed by a_, then its JSON edited by `edit` (signature kept).
  std::string tampered(const NodeRecord& r, const std::function<void(json&)>& edit) {
    json j = json::parse(sign_record(r, a_));
    edit(j);
    return j.dump();
  }
  static std::string reason(const Result<NodeRecord>& r) {
    return r.ok() ? "(accepted)" : r.status().ToString();
  }
  static void expect_rejected(const Result<NodeRecord>& r, Status::Code code,
                              const std::string& words) {
    ASSERT_FALSE(r.ok()) << "accepted";
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
    EXPECT_NE(r.status().message().find(words), std::string::npos)
        << "want \"" << words << "\" in: " << r.status().ToString();
  }

  net::Identity a_, b_;
  NodeRecord rec_;     // what the node fills in
  NodeRecord signed_;  // rec_ with a_'s node id and public key: what readers get
};

TEST_F(NodeRecordTest, SignedRecordReadsBackUnchanged) {
  const std::string wire = sign_record(rec_, a_);
  auto r = parse_and_verify(wire, kNow);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, signed_);
  EXPECT_EQ(r->node_id, a_.node_id());
  // Signing is deterministic (Ed25519), so the wire form is too.
  EXPECT_EQ(sign_record(rec_, a_), wire);
  // Awkward doubles survive the JSON text exactly.
  for (double v : {0.0, 1e-300, 1.0 / 3.0, 123456789.123456789, 1e12}) {
    NodeRecord x = rec_;
    x.throughput = v;
    x.price_per_1k = v;
    auto back = parse_and_verify(sign_record(x, a_), kNow);
    ASSERT_TRUE(back.ok()) << v << ": " << back.status().ToString();
    EXPECT_EQ(back->throughput, v);
    EXPECT_EQ(back->price_per_1k, v);
  }
}

// The address rule `swarm node --announce-address` checks at start, so a node
// never announces a record every reader would drop.
TEST(ValidateAddress, AcceptsWhatRecordsMayCarryAndNamesWhatTheyMayNot) {
  for (const char* ok : {"10.0.0.7:7001", "node-7.example.org:1", "[2001:db8::7]:65535",
                         "localhost:443"})
    EXPECT_TRUE(validate_address(ok).ok()) << ok;
  for (const char* bad : {"", "10.0.0.7", "10.0.0.7:0", "10.0.0.7:65536", "10.0.0.7:07001",
                          "a:1,b:2", "[]:1", "host name:1", ":7001", "[::1]7001"}) {
    const Status st = validate_address(bad);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find(std::string("\"") + bad), std::string::npos) << st.message();
  }
}

TEST_F(NodeRecordTest, SignerIsTheIdentityWhateverTheRecordClaims) {
  NodeRecord claim = rec_;
  claim.node_id = b_.node_id();
  claim.public_key = b_.public_key();
  auto r = parse_and_verify(sign_record(claim, a_), kNow);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->node_id, a_.node_id());
  EXPECT_EQ(r->public_key, a_.public_key());
}

TEST_F(NodeRecordTest, CanonicalBytesDoNotShiftAcrossFieldBoundaries) {
  NodeRecord x = signed_, y = signed_;
  x.addresses = {"ab:1", "c:1"};
  y.addresses = {"a", "b:1c:1"};
  EXPECT_NE(canonical_bytes(x), canonical_bytes(y));
  x = signed_;
  y = signed_;
  x.addresses.push_back("m:1");
  y.model_id = "m:1" + y.model_id;
  EXPECT_NE(canonical_bytes(x), canonical_bytes(y));
  x = signed_;
  y = signed_;
  y.throughput = -0.0;
  x.throughput = 0.0;
  EXPECT_NE(canonical_bytes(x), canonical_bytes(y));
  EXPECT_EQ(
      canonical_bytes(signed_).rfind(std::string("\0\0\0\x14", 4) + "swarm.node-record.v1", 0), 0u);
}

TEST_F(NodeRecordTest, ChangingAnySignedFieldBreaksTheSignature) {
  const std::vector<std::pair<std::string, std::function<void(json&)>>> edits = {
      {"addresses[0]", [](json& j) { j["addresses"][0] = "10.0.0.8:7001"; }},
      {"addresses+", [](json& j) { j["addresses"].push_back("evil.example:1"); }},
      {"addresses-", [](json& j) { j["addresses"].erase(2); }},
      {"model_id", [](json& j) { j["model_id"] = std::string(64, 'a'); }},
      {"layer_begin", [](json& j) { j["layer_begin"] = 7; }},
      {"layer_end", [](json& j) { j["layer_end"] = 17; }},
      {"throughput", [](json& j) { j["throughput"] = 99999.0; }},
      {"free_kv_bytes", [](json& j) { j["free_kv_bytes"] = 1; }},
      {"price_per_1k", [](json& j) { j["price_per_1k"] = 0.0; }},
      {"issued_at", [](json& j) { j["issued_at"] = kNow - 11; }},
      {"expires_at", [](json& j) { j["expires_at"] = kNow + 601; }},
      {"signature",
       [](json& j) {
         std::string s = j["signature"];
         s[10] = s[10] == '0' ? '1' : '0';
         j["signature"] = s;
       }},
  };
  for (const auto& [name, edit] : edits) {
    SCOPED_TRACE(name);
    expect_rejected(parse_and_verify(tampered(rec_, edit), kNow), Status::Code::kCorruption,
                    "bad signature");
  }
  expect_rejected(
      parse_and_verify(tampered(rec_, [](json& j) { j["protocol"] = "swarm.v2"; }), kNow),
      Status::Code::kUnsupported, "protocol version");
}

TEST_F(NodeRecordTest, FlippingAnyByteOfTheWireFormIsRejected) {
  const std::string wire = sign_record(rec_, a_);
  for (size_t i = 0; i < wire.size(); ++i) {
    for (uint8_t bit : {0x01, 0x20, 0x80}) {
      std::string w = wire;
      w[i] = static_cast<char>(w[i] ^ bit);
      auto r = parse_and_verify(w, kNow);
      EXPECT_FALSE(r.ok()) << "byte " << i << " ('" << wire[i] << "') ^ " << int(bit)
                           << " accepted: " << w;
    }
  }
}

TEST_F(NodeRecordTest, SignatureByAnotherKeyIsRejected) {
  // b_ signs, the record claims to be a_.
  json j = json::parse(sign_record(rec_, b_));
  j["node_id"] = a_.node_id();
  j["public_key"] = net::to_hex(a_.public_key().data(), net::kPublicKeyBytes);
  expect_rejected(parse_and_verify(j.dump(), kNow), Status::Code::kCorruption, "bad signature");
}

TEST_F(NodeRecordTest, NodeIdOfAnotherKeyIsRejected) {
  const std::string other = b_.node_id();
  expect_rejected(parse_and_verify(tampered(rec_, [&](json& j) { j["node_id"] = other; }), kNow),
                  Status::Code::kCorruption, "is not the public key's");
  // The other key with its own node id, but a_'s signature.
  const std::string pk = net::to_hex(b_.public_key().data(), net::kPublicKeyBytes);
  expect_rejected(parse_and_verify(tampered(rec_,
                                            [&](json& j) {
                                              j["node_id"] = other;
                                              j["public_key"] = pk;
                                            }),
                                   kNow),
                  Status::Code::kCorruption, "bad signature");
}

TEST_F(NodeRecordTest, TimeWindowIsEnforced) {
  const std::string wire = sign_record(rec_, a_);
  EXPECT_TRUE(parse_and_verify(wire, rec_.expires_at - 1).ok());
  expect_rejected(parse_and_verify(wire, rec_.expires_at), Status::Code::kInvalidArgument,
                  "expired");
  expect_rejected(parse_and_verify(wire, rec_.expires_at + 100000), Status::Code::kInvalidArgument,
                  "expired");

  NodeRecord early = rec_;
  early.issued_at = kNow + kMaxClockSkewSeconds;
  early.expires_at = early.issued_at + 60;
  EXPECT_TRUE(parse_and_verify(sign_record(early, a_), kNow).ok()) << "within the skew";
  early.issued_at += 1;
  early.expires_at += 1;
  expect_rejected(parse_and_verify(sign_record(early, a_), kNow), Status::Code::kInvalidArgument,
                  "issued in the future");
  // A `now` far in the past must not overflow into acceptance.
  expect_rejected(parse_and_verify(wire, std::numeric_limits<int64_t>::min()),
                  Status::Code::kInvalidArgument, "issued in the future");

  NodeRecord lasting = rec_;
  lasting.expires_at = lasting.issued_at + kMaxLifetimeSeconds;
  EXPECT_TRUE(parse_and_verify(sign_record(lasting, a_), kNow).ok());
  lasting.expires_at += 1;
  expect_rejected(parse_and_verify(sign_record(lasting, a_), kNow), Status::Code::kInvalidArgument,
                  "lifetime");

  NodeRecord backwards = rec_;
  backwards.expires_at = backwards.issued_at;
  expect_rejected(parse_and_verify(sign_record(backwards, a_), kNow),
                  Status::Code::kInvalidArgument, "not after issued_at");
  NodeRecord negative = rec_;
  negative.issued_at = -5;
  negative.expires_at = 5;
  expect_rejected(parse_and_verify(sign_record(negative, a_), 0), Status::Code::kInvalidArgument,
                  "negative time");
}

TEST_F(NodeRecordTest, MalformedWireFormsAreRejected) {
  const std::string wire = sign_record(rec_, a_);
  for (const std::string& w :
       {std::string(""), std::string("{"), std::string("[]"), std::string("null"),
        std::string("\"x\""), wire.substr(0, wire.size() - 1), wire + "x",
        std::string(kMaxWireBytes + 1, ' ')}) {
    auto r = parse_and_verify(w, kNow);
    EXPECT_FALSE(r.ok()) << w;
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << reason(r);
  }
  expect_rejected(parse_and_verify("{\"protocol\":\"swarm.v1\"}", kNow), Status::Code::kCorruption,
                  "missing field");
  for (const char* field :
       {"node_id", "public_key", "addresses", "model_id", "layer_begin", "layer_end", "throughput",
        "free_kv_bytes", "price_per_1k", "issued_at", "expires_at", "signature", "protocol"}) {
    SCOPED_TRACE(field);
    expect_rejected(parse_and_verify(tampered(rec_, [&](json& j) { j.erase(field); }), kNow),
                    Status::Code::kCorruption, std::string("missing field ") + field);
    // Every field gets a value of a type it never has.
    const json wrong = j_is_string_field(field) ? json(5) : json("5");
    auto r = parse_and_verify(tampered(rec_, [&](json& j) { j[field] = wrong; }), kNow);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().code(), Status::Code::kOk);
  }
  expect_rejected(parse_and_verify(tampered(rec_, [](json& j) { j["extra"] = 1; }), kNow),
                  Status::Code::kCorruption, "unknown field");
  expect_rejected(parse_and_verify(tampered(rec_, [](json& j) { j["layer_begin"] = 8.0; }), kNow),
                  Status::Code::kCorruption, "not an integer");
  expect_rejected(parse_and_verify(tampered(rec_, [](json& j) { j["free_kv_bytes"] = -1; }), kNow),
                  Status::Code::kCorruption, "free_kv_bytes");
  expect_rejected(
      parse_and_verify(tampered(rec_, [](json& j) { j["addresses"] = json::array({1}); }), kNow),
      Status::Code::kCorruption, "address");
  expect_rejected(parse_and_verify(tampered(rec_,
                                            [](json& j) {
                                              std::string s = j["signature"];
                                              for (char& c : s)
                                                c = static_cast<char>(std::toupper(c));
                                              j["signature"] = s;
                                            }),
                                   kNow),
                  Status::Code::kCorruption, "hex");
  expect_rejected(parse_and_verify(tampered(rec_,
                                            [](json& j) {
                                              std::string s = j["public_key"];
                                              j["public_key"] = s.substr(2);
                                            }),
                                   kNow),
                  Status::Code::kCorruption, "public_key");
  // NaN cannot be written as JSON: the field becomes null and the reader refuses it.
  NodeRecord nan = rec_;
  nan.throughput = std::nan("");
  expect_rejected(parse_and_verify(sign_record(nan, a_), kNow), Status::Code::kCorruption,
                  "throughput");
}

TEST_F(NodeRecordTest, AbsurdValuesAreRejectedEvenWhenSigned) {
  const std::vector<std::pair<std::function<void(NodeRecord&)>, std::string>> cases = {
      {[](NodeRecord& r) { r.layer_begin = 16, r.layer_end = 8; }, "layer range"},
      {[](NodeRecord& r) { r.layer_begin = 8, r.layer_end = 8; }, "layer range"},
      {[](NodeRecord& r) { r.layer_begin = -1; }, "layer range"},
      {[](NodeRecord& r) { r.layer_end = kMaxLayers + 1; }, "layer range"},
      {[](NodeRecord& r) { r.addresses.clear(); }, "no addresses"},
      {[](NodeRecord& r) { r.addresses = std::vector<std::string>(kMaxAddresses + 1, "a:1"); },
       "addresses"},
      {[](NodeRecord& r) { r.addresses = {"localhost"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {":7001"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"h:0"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"h:65536"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"h:80x"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"h:080"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"h h:80"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"[::1]80"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"[]:80"}; }, "not host:port"},
      {[](NodeRecord& r) { r.addresses = {"::1:80"}; }, "not host:port"},
      {[](NodeRecord& r) { r.model_id = ""; }, "model id"},
      {[](NodeRecord& r) { r.model_id = "a b"; }, "model id"},
      {[](NodeRecord& r) { r.model_id = std::string(kMaxModelIdLength + 1, 'a'); }, "model id"},
      {[](NodeRecord& r) { r.throughput = -1; }, "throughput"},
      {[](NodeRecord& r) { r.throughput = 1e13; }, "throughput"},
      {[](NodeRecord& r) { r.price_per_1k = -0.5; }, "price_per_1k"},
  };
  for (const auto& [mutate, words] : cases) {
    NodeRecord r = rec_;
    mutate(r);
    SCOPED_TRACE(words + " " + (r.addresses.empty() ? "" : r.addresses[0]));
    expect_rejected(parse_and_verify(sign_record(r, a_), kNow), Status::Code::kInvalidArgument,
                    words);
  }
  // A later version is "unsupported" even if its members are not ours.
  expect_rejected(parse_and_verify("{\"protocol\":\"swarm.v2\",\"other\":1}", kNow),
                  Status::Code::kUnsupported, "swarm.v2");
  NodeRecord r = rec_;
  r.protocol = "swarm.v2";
  expect_rejected(parse_and_verify(sign_record(r, a_), kNow), Status::Code::kUnsupported,
                  "swarm.v2");
  // The limits themselves are fine.
  r = rec_;
  r.layer_begin = 0;
  r.layer_end = kMaxLayers;
  r.addresses = std::vector<std::string>(kMaxAddresses, "h:65535");
  r.model_id = std::string(kMaxModelIdLength, 'a');
  EXPECT_TRUE(parse_and_verify(sign_record(r, a_), kNow).ok());
}

TEST_F(NodeRecordTest, RandomMutationsNeverCrashNorYieldUnsignedFields) {
  const std::string wire = sign_record(rec_, a_);
  std::mt19937 rng(12345);
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const std::string alphabet = "0123456789abcdef\"{}[],:.-+eE \\nul";
  int accepted = 0;
  for (int iter = 0; iter < 1000; ++iter) {
    std::string w = wire;
    const int ops = 1 + static_cast<int>(pick(3));
    for (int k = 0; k < ops && !w.empty(); ++k) {
      const size_t at = pick(w.size());
      switch (pick(6)) {
        case 0:
          w[at] = static_cast<char>(w[at] ^ (1 << pick(8)));
          break;
        case 1:
          w[at] = alphabet[pick(alphabet.size())];
          break;
        case 2:
          w.insert(at, 1, alphabet[pick(alphabet.size())]);
          break;
        case 3:
          w.erase(at, 1 + pick(4));
          break;
        case 4:
          w.resize(at);
          break;
        case 5: {  // copy a slice of the record elsewhere in it
          const size_t from = pick(w.size()), len = 1 + pick(24);
          w.insert(at, w.substr(from, len));
          break;
        }
      }
    }
    auto r = parse_and_verify(w, kNow);
    if (r.ok()) {
      ++accepted;
      EXPECT_EQ(*r, signed_) << "accepted a record with unsigned fields: " << w;
    }
  }
  // A mutation may (rarely) leave the fields as signed, e.g. by inserting a space.
  EXPECT_LT(accepted, 100);
}

}  // namespace
}  // namespace swarm::discovery
