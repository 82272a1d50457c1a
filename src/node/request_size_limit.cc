#include "node/request_size_limit.h"

#include <algorithm>
#include <cstdint>

#include "net/wire_format.h"

namespace swarm::node {
namespace {

// Upper bounds of the encoded size of a message's parts, in bytes (protobuf
// field tags and lengths included, generously).
constexpr uint64_t kTokenBytes = 6;          // a token id: varint of up to 5 bytes
constexpr uint64_t kProbEntryBytes = 10;     // a q entry: id varint and a float
constexpr uint64_t kHopBytes = 1024 + 32 + 64;  // address (capped at 1024), key, layers
constexpr uint64_t kTimingBytes = 1024 + 128;   // address and counters
constexpr uint64_t kBiasBytes = 16;          // a logit bias: token and float
// A stage's signed commitment (trust/commitment.h): model and session ids,
// four hashes, key, signature, counters; and per row, with Step.row_hashes
// or drafts, an input and an output row hash. With Step.sketches, sketches
// (trust/activation_sketch.h): of one row in 32 (16 entries) in a step, of
// every row (32 entries) in an audit run, which is then at most
// max_sampled_rows long (the stage server refuses longer ones).
constexpr uint64_t kCommitmentBytes = 256 + 1024 + 4 * 34 + 34 + 66 + 64;
constexpr uint64_t kRowHashesBytes = 2 * 34;
constexpr uint64_t kSketchBytes = 16 * (5 + 4) + 16;
constexpr uint64_t kWideSketchBytes = 32 * (5 + 4) + 16;
constexpr uint64_t kSlackBytes = 64 << 10;   // every small field, with room to spare

}  // namespace

size_t max_request_bytes(const RequestShape& s) {
  const uint64_t row = uint64_t(std::max(0, s.d_model)) * 4 + kTokenBytes;
  const uint64_t context = uint64_t(std::max(0, s.context));
  const uint64_t rows = uint64_t(std::max(0, s.max_sampled_rows));
  const uint64_t stages = uint64_t(std::max(0, s.n_layer));
  // A whole-context step, each stage before committing per row with a
  // sketch of one row in 32 ...
  const uint64_t plain =
      context * row + stages * (context * kRowHashesBytes + (context / 32 + 1) * kSketchBytes);
  // ... or the longest step sampled at every position, with drafts' q, or an
  // audit run with every row sketched.
  const uint64_t drafted = rows * row + rows * kMaxDraftProbEntries * kProbEntryBytes +
                           stages * rows * (kRowHashesBytes + kWideSketchBytes);
  // Timings and commitments: one per stage before, at most one per layer.
  const uint64_t step = std::max(plain, drafted) + uint64_t(std::max(0, s.max_hops)) * kHopBytes +
                        stages * (kTimingBytes + kCommitmentBytes) +
                        uint64_t(std::max(0, s.max_session_id_bytes));
  const uint64_t open = uint64_t(std::max(0, s.n_vocab)) * kBiasBytes;
  const uint64_t bound = std::max(step, open) + kSlackBytes;
  return static_cast<size_t>(std::min<uint64_t>(bound, uint64_t(net::kMaxMessageBytes)));
}

}  // namespace swarm::node
