#include "trust/commitment.h"

#include <sodium.h>

#include <cstring>

namespace swarm::trust {
namespace {

constexpr std::string_view kDomain = "swarm-commitment-v1";

void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_bytes(std::string* out, std::string_view b) {
  put_u64(out, b.size());
  out->append(b);
}

}  // namespace

Hash hash_bytes(const void* data, size_t n) {
  Hash h;
  crypto_generichash(h.data(), h.size(), static_cast<const unsigned char*>(data), n, nullptr, 0);
  return h;
}

std::vector<Hash> row_hashes(const void* data, int64_t rows, size_t row_bytes) {
  std::vector<Hash> out(static_cast<size_t>(rows));
  const auto* p = static_cast<const uint8_t*>(data);
  for (int64_t r = 0; r < rows; ++r) out[static_cast<size_t>(r)] = hash_bytes(p + r * row_bytes, row_bytes);
  return out;
}

Hash combine_rows(const Hash* rows, size_t n) { return hash_bytes(rows, n * sizeof(Hash)); }

std::vector<Hash> token_row_hashes(const int32_t* tokens, int64_t n) {
  std::vector<Hash> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint8_t le[4];
    const auto v = static_cast<uint32_t>(tokens[i]);
    for (int b = 0; b < 4; ++b) le[b] = static_cast<uint8_t>(v >> (8 * b));
    out[static_cast<size_t>(i)] = hash_bytes(le, 4);
  }
  return out;
}

PrefixHashes::PrefixHashes() { at_.push_back(hash_bytes(kDomain.data(), kDomain.size())); }

void PrefixHashes::append(const int32_t* tokens, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint8_t buf[kHashBytes + 4];
    std::memcpy(buf, at_.back().data(), kHashBytes);
    const auto v = static_cast<uint32_t>(tokens[i]);
    for (int b = 0; b < 4; ++b) buf[kHashBytes + b] = static_cast<uint8_t>(v >> (8 * b));
    at_.push_back(hash_bytes(buf, sizeof buf));
  }
}

void PrefixHashes::truncate(int length) {
  if (length >= 0 && length + 1 < static_cast<int>(at_.size())) at_.resize(static_cast<size_t>(length) + 1);
}

Hash PrefixHashes::continued(const Hash& from, const int32_t* tokens, int64_t n) {
  PrefixHashes p;
  p.at_ = {from};
  p.append(tokens, n);
  return p.at_.back();
}

Hash PrefixHashes::of(const int32_t* tokens, int64_t n) {
  PrefixHashes p;
  p.append(tokens, n);
  return p.at(p.length());
}

Hash tokens_hash(const int32_t* tokens, size_t n, int32_t accepted_drafts) {
  std::string b;
  put_u64(&b, static_cast<uint32_t>(accepted_drafts));
  for (size_t i = 0; i < n; ++i) put_u64(&b, static_cast<uint32_t>(tokens[i]));
  return hash_bytes(b.data(), b.size());
}

std::string signing_bytes(const v1::Commitment& c) {
  std::string out(kDomain);
  put_bytes(&out, c.model_id());
  put_bytes(&out, c.session_id());
  put_u64(&out, c.step_id());
  put_u64(&out, static_cast<uint32_t>(c.position()));
  put_u64(&out, static_cast<uint32_t>(c.n_tokens()));
  put_u64(&out, static_cast<uint32_t>(c.first_layer()));
  put_u64(&out, static_cast<uint32_t>(c.last_layer()));
  put_bytes(&out, c.prefix_hash());
  put_bytes(&out, c.input_hash());
  put_bytes(&out, c.output_hash());
  put_bytes(&out, c.tokens_hash());
  put_bytes(&out, c.public_key());
  // Sketches (inexact stages) are signed too: they are what a tolerant audit
  // judges. None: the bytes are those of a commitment without the field.
  for (const v1::RowSketch& s : c.sketches()) {
    put_u64(&out, static_cast<uint32_t>(s.position()));
    put_u64(&out, static_cast<uint64_t>(s.indices_size()));
    for (int32_t i : s.indices()) put_u64(&out, static_cast<uint32_t>(i));
    put_u64(&out, static_cast<uint64_t>(s.values_size()));
    for (float v : s.values()) {
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      put_u64(&out, bits);
    }
  }
  return out;
}

void sign(v1::Commitment* c, const net::Identity& identity) {
  c->set_public_key(identity.public_key().data(), identity.public_key().size());
  const net::Signature sig = identity.sign(signing_bytes(*c));
  c->set_signature(sig.data(), sig.size());
}

Status verify_signature(const v1::Commitment& c) {
  if (c.public_key().size() != net::kPublicKeyBytes)
    return Status::InvalidArgument("Commitment.public_key: " + std::to_string(c.public_key().size()) +
                                   " bytes, expected " + std::to_string(net::kPublicKeyBytes));
  if (c.signature().size() != net::kSignatureBytes)
    return Status::InvalidArgument("Commitment.signature: " + std::to_string(c.signature().size()) +
                                   " bytes, expected " + std::to_string(net::kSignatureBytes));
  net::PublicKey pk;
  std::memcpy(pk.data(), c.public_key().data(), pk.size());
  net::Signature sig;
  std::memcpy(sig.data(), c.signature().data(), sig.size());
  if (!net::Identity::verify(pk, signing_bytes(c), sig))
    return Status::InvalidArgument("Commitment.signature: not a signature by Commitment.public_key");
  return Status::Ok();
}

std::string_view as_view(const Hash& h) {
  return {reinterpret_cast<const char*>(h.data()), h.size()};
}

Result<Hash> hash_field(const std::string& bytes, const char* field) {
  if (bytes.size() != kHashBytes)
    return Status::InvalidArgument(std::string(field) + ": " + std::to_string(bytes.size()) +
                                   " bytes, expected " + std::to_string(kHashBytes));
  Hash h;
  std::memcpy(h.data(), bytes.data(), h.size());
  return h;
}

std::string hex(const Hash& h) { return net::to_hex(h.data(), h.size()); }

}  // namespace swarm::trust
