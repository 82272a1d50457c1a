#include "net/merkle.h"

namespace swarm::net {

std::string digest_hex(const Digest& d) {
  char hex[2 * sizeof(Digest) + 1];
  sodium_bin2hex(hex, sizeof hex, d.data(), d.size());
  return hex;
}

bool digest_from_hex(const std::string& hex, Digest* out) {
  if (hex.size() != 2 * out->size()) return false;
  size_t len = 0;
  return sodium_hex2bin(out->data(), out->size(), hex.data(), hex.size(), nullptr, &len, nullptr) ==
             0 &&
         len == out->size();
}

Blake2b256::Blake2b256() { crypto_generichash_init(&state_, nullptr, 0, 32); }

void Blake2b256::update(const void* p, size_t n) {
  crypto_generichash_update(&state_, static_cast<const unsigned char*>(p), n);
}

void Blake2b256::u64(uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  update(b, 8);
}

void Blake2b256::str(const std::string& s) {
  u64(s.size());
  update(s.data(), s.size());
}

Digest Blake2b256::final() {
  Digest d;
  crypto_generichash_final(&state_, d.data(), d.size());
  return d;
}

Digest header_leaf(const Digest& layout) {
  Blake2b256 h;
  h.str(kHeaderLeafTag);
  h.update(layout.data(), layout.size());
  return h.final();
}

TensorLeafHasher::TensorLeafHasher(const std::string& name, const std::string& type,
                                   const std::vector<int64_t>& shape, uint64_t nbytes) {
  h_.str(kTensorLeafTag);
  h_.str(name);
  h_.str(type);
  h_.u64(shape.size());
  for (int64_t d : shape) h_.u64(static_cast<uint64_t>(d));
  h_.u64(nbytes);
}

Digest merkle_parent(const Digest& left, const Digest& right) {
  Blake2b256 h;
  h.str(kNodeTag);
  h.update(left.data(), left.size());
  h.update(right.data(), right.size());
  return h.final();
}

namespace {

std::vector<Digest> level_above(const std::vector<Digest>& level) {
  std::vector<Digest> up;
  up.reserve((level.size() + 1) / 2);
  for (size_t i = 0; i < level.size(); i += 2)
    up.push_back(i + 1 < level.size() ? merkle_parent(level[i], level[i + 1])
                                      : level[i]);  // odd: promoted
  return up;
}

}  // namespace

Digest sized_root(const Digest& top, uint64_t n_leaves) {
  Blake2b256 h;
  h.str(kRootTag);
  h.u64(n_leaves);
  h.update(top.data(), top.size());
  return h.final();
}

Digest merkle_root(const std::vector<Digest>& leaves) {
  if (leaves.empty()) return Digest{};
  std::vector<Digest> level = leaves;
  while (level.size() > 1) level = level_above(level);
  return level[0];
}

std::vector<std::vector<Digest>> merkle_levels(const std::vector<Digest>& leaves) {
  std::vector<std::vector<Digest>> levels{leaves};
  while (levels.back().size() > 1) levels.push_back(level_above(levels.back()));
  return levels;
}

std::vector<Digest> merkle_path(const std::vector<std::vector<Digest>>& levels, size_t index) {
  std::vector<Digest> path;
  if (levels.empty() || index >= levels[0].size()) return path;
  for (size_t l = 0; l + 1 < levels.size(); ++l, index /= 2)
    if ((index ^ 1) < levels[l].size()) path.push_back(levels[l][index ^ 1]);
  return path;
}

size_t merkle_path_length(size_t index, size_t n_leaves) {
  size_t len = 0;
  for (size_t n = n_leaves; n > 1; n = (n + 1) / 2, index /= 2)
    if ((index ^ 1) < n) ++len;
  return len;
}

Result<Digest> merkle_root_from_path(const Digest& leaf, size_t index, size_t n_leaves,
                                     const std::vector<Digest>& path) {
  if (index >= n_leaves)
    return Status::InvalidArgument("leaf index " + std::to_string(index) + " is not below the " +
                                   std::to_string(n_leaves) + " leaves");
  const size_t want = merkle_path_length(index, n_leaves);
  if (path.size() != want)
    return Status::InvalidArgument("the path of leaf " + std::to_string(index) + " has " +
                                   std::to_string(path.size()) + " siblings; a tree of " +
                                   std::to_string(n_leaves) + " leaves needs " +
                                   std::to_string(want));
  Digest node = leaf;
  size_t next = 0;
  for (size_t n = n_leaves; n > 1; n = (n + 1) / 2, index /= 2) {
    const size_t sibling = index ^ 1;
    if (sibling >= n) continue;  // promoted
    node = (index & 1) ? merkle_parent(path[next], node) : merkle_parent(node, path[next]);
    ++next;
  }
  return node;
}

}  // namespace swarm::net
