// A stage's signed statement of what it computed for one step (doc/trust.md):
// the hashes of the rows that entered and left it, the token history its cache
// held, and where in which session of which model. Our kernels are bit-exact,
// so anyone running the same layers on the same input gets the same hashes; a
// signed commitment to other hashes is a portable proof of fraud.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "net/identity.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::trust {

inline constexpr size_t kHashBytes = 32;
using Hash = std::array<uint8_t, kHashBytes>;

// BLAKE2b-256.
Hash hash_bytes(const void* data, size_t n);
// One hash per row of `rows` rows of `row_bytes` each.
std::vector<Hash> row_hashes(const void* data, int64_t rows, size_t row_bytes);
// The hash of a step's rows: BLAKE2b-256 of the concatenated row hashes, so the
// hash of any window of rows follows from per-row hashes (audits compare one
// long run with many short steps).
Hash combine_rows(const Hash* rows, size_t n);
inline Hash combine_rows(const std::vector<Hash>& rows) { return combine_rows(rows.data(), rows.size()); }
// Token ids as the first stage's input rows (int32 little-endian, one per row).
std::vector<Hash> token_row_hashes(const int32_t* tokens, int64_t n);

// The token history a stage's cache holds, as a rolling hash per length:
// at(0) is fixed; at(i + 1) = BLAKE2b-256(at(i) || token i). Rewinding keeps
// the first `length + 1` entries.
class PrefixHashes {
 public:
  PrefixHashes();
  void append(const int32_t* tokens, int64_t n);
  void truncate(int length);  // keeps positions [0, length)
  int length() const { return static_cast<int>(at_.size()) - 1; }
  const Hash& at(int length) const { return at_[static_cast<size_t>(length)]; }
  // The hash after `tokens` follow a history whose hash is `from`.
  static Hash continued(const Hash& from, const int32_t* tokens, int64_t n);
  // The hash of `tokens` from the empty history.
  static Hash of(const int32_t* tokens, int64_t n);

 private:
  std::vector<Hash> at_;
};

// The hash a last stage commits to for its answer: the tokens it returned and
// how many drafts it accepted.
Hash tokens_hash(const int32_t* tokens, size_t n, int32_t accepted_drafts);

// The bytes a commitment's signature covers: a domain prefix, then every field
// but the signature and the per-row hash lists, in field order, length-prefixed
// (the sketches last, each entry's float as its bits).
std::string signing_bytes(const v1::Commitment& c);
// Fills public_key and signature.
void sign(v1::Commitment* c, const net::Identity& identity);
// OK when `c` carries a public key and a valid signature by it.
Status verify_signature(const v1::Commitment& c);

std::string_view as_view(const Hash& h);
Result<Hash> hash_field(const std::string& bytes, const char* field);
std::string hex(const Hash& h);

}  // namespace swarm::trust
