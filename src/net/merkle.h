// The Merkle tree behind a model id (doc/protocol.md, "Model id"): BLAKE2b-256
// leaves, one for the model's header and one per tensor, combined pairwise into a
// root. A node can then prove that the tensors of its layers belong to a model id
// with a few sibling hashes, without the rest of the weights.
//
// Every hash starts with a length-framed domain tag, so a leaf can never pass for
// an interior node (or a header leaf for a tensor leaf). An odd node at the end of
// a level is promoted unchanged to the next level (never duplicated, so no two
// leaf lists share a root by repetition).
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/status.h"

namespace swarm::net {

using Digest = std::array<uint8_t, 32>;

inline constexpr char kHeaderLeafTag[] = "swarm.model-id.v2/header";
inline constexpr char kTensorLeafTag[] = "swarm.model-id.v2/tensor";
inline constexpr char kNodeTag[] = "swarm.model-id.v2/node";
inline constexpr char kRootTag[] = "swarm.model-id.v2/root";

std::string digest_hex(const Digest& d);
// 64 hex digits (either case) to a digest; false otherwise.
bool digest_from_hex(const std::string& hex, Digest* out);

// BLAKE2b-256 over a stream with the framing the tree uses: integers as 8 bytes
// little-endian, strings as their length (u64) and bytes.
class Blake2b256 {
 public:
  Blake2b256();
  void update(const void* p, size_t n);
  void u64(uint64_t v);
  void str(const std::string& s);
  Digest final();

 private:
  crypto_generichash_state state_;
};

// The header leaf: H(str(kHeaderLeafTag) || layout digest).
Digest header_leaf(const Digest& layout);

// A tensor leaf: H(str(kTensorLeafTag) || str(name) || str(type) || u64(ndims) ||
// u64(dim) per dimension (GGUF order, innermost first) || u64(nbytes) || the
// nbytes data bytes). Feed the data with update(), in order, then final().
class TensorLeafHasher {
 public:
  TensorLeafHasher(const std::string& name, const std::string& type,
                   const std::vector<int64_t>& shape, uint64_t nbytes);
  void update(const void* p, size_t n) { h_.update(p, n); }
  Digest final() { return h_.final(); }

 private:
  Blake2b256 h_;
};

// An interior node: H(str(kNodeTag) || left || right).
Digest merkle_parent(const Digest& left, const Digest& right);

// The top of the tree over `leaves` (at least one; a single leaf is its own top).
Digest merkle_root(const std::vector<Digest>& leaves);

// The model id's digest: H(str(kRootTag) || u64(n_leaves) || top), so the id
// commits to the number of leaves too and a proof cannot claim another tree size.
Digest sized_root(const Digest& top, uint64_t n_leaves);

// Every level of the tree, the leaves first and the root (alone) last.
std::vector<std::vector<Digest>> merkle_levels(const std::vector<Digest>& leaves);

// The sibling hashes from leaf `index` up to the root, bottom first, from
// merkle_levels(); levels where the node is promoted contribute none.
std::vector<Digest> merkle_path(const std::vector<std::vector<Digest>>& levels, size_t index);

// How many siblings a path for leaf `index` of `n_leaves` holds.
size_t merkle_path_length(size_t index, size_t n_leaves);

// The root that `leaf` at `index` of `n_leaves` leads to through `path`;
// InvalidArgument if the index is out of range or the path has too few or too
// many siblings.
Result<Digest> merkle_root_from_path(const Digest& leaf, size_t index, size_t n_leaves,
                                     const std::vector<Digest>& path);

}  // namespace swarm::net
