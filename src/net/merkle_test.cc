// The model id's Merkle tree: the root follows the documented rule (odd nodes
// promoted, domain-separated hashes), and every leaf's path leads to the root
// for every tree size, while a wrong leaf, sibling or path length does not.
#include "net/merkle.h"

#include <gtest/gtest.h>

namespace swarm::net {
namespace {

Digest leaf(int i) {
  Blake2b256 h;
  h.u64(static_cast<uint64_t>(i));
  return h.final();
}

std::vector<Digest> leaves(size_t n) {
  std::vector<Digest> v;
  for (size_t i = 0; i < n; ++i) v.push_back(leaf(static_cast<int>(i)));
  return v;
}

TEST(Merkle, RootFollowsTheDocumentedRule) {
  const auto l = leaves(5);
  EXPECT_EQ(merkle_root({l[0]}), l[0]);
  EXPECT_EQ(merkle_root({l[0], l[1]}), merkle_parent(l[0], l[1]));
  // Three leaves: the third is promoted, not paired with a copy of itself.
  EXPECT_EQ(merkle_root({l[0], l[1], l[2]}), merkle_parent(merkle_parent(l[0], l[1]), l[2]));
  EXPECT_NE(merkle_root({l[0], l[1], l[2]}), merkle_root({l[0], l[1], l[2], l[2]}));
  // Five: ((01)(23))(4).
  EXPECT_EQ(
      merkle_root(l),
      merkle_parent(merkle_parent(merkle_parent(l[0], l[1]), merkle_parent(l[2], l[3])), l[4]));
  EXPECT_NE(merkle_parent(l[0], l[1]), merkle_parent(l[1], l[0]));
}

TEST(Merkle, HashesAreDomainSeparatedAndFramed) {
  // H(node tag || a || b) by hand, and distinct from a header or tensor leaf.
  const auto l = leaves(2);
  Blake2b256 h;
  h.str(kNodeTag);
  h.update(l[0].data(), 32);
  h.update(l[1].data(), 32);
  EXPECT_EQ(h.final(), merkle_parent(l[0], l[1]));
  EXPECT_NE(header_leaf(l[0]), l[0]);
  TensorLeafHasher a("x", "F32", {1}, 4), b("x", "F32", {1}, 4), c("x", "F16", {1}, 4);
  const float one = 1;
  a.update(&one, 4);
  b.update(&one, 4);
  c.update(&one, 4);
  EXPECT_EQ(a.final(), b.final());
  TensorLeafHasher a2("x", "F32", {1}, 4);
  a2.update(&one, 4);
  EXPECT_NE(a2.final(), c.final());  // the type is in the leaf
}

TEST(Merkle, EveryPathLeadsToTheRootForEverySize) {
  for (size_t n = 1; n <= 33; ++n) {
    const auto l = leaves(n);
    const Digest root = merkle_root(l);
    const auto levels = merkle_levels(l);
    EXPECT_EQ(levels.back().size(), 1u);
    EXPECT_EQ(levels.back()[0], root);
    for (size_t i = 0; i < n; ++i) {
      const auto path = merkle_path(levels, i);
      EXPECT_EQ(path.size(), merkle_path_length(i, n)) << n << " " << i;
      auto r = merkle_root_from_path(l[i], i, n, path);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(*r, root) << "n " << n << " leaf " << i;
      // Another leaf, or this leaf at another index, does not lead there.
      auto wrong = merkle_root_from_path(leaf(1000), i, n, path);
      ASSERT_TRUE(wrong.ok());
      EXPECT_NE(*wrong, root);
      if (!path.empty()) {
        auto tampered = path;
        tampered[0][5] ^= 1;
        EXPECT_NE(*merkle_root_from_path(l[i], i, n, tampered), root);
        tampered = path;
        tampered.pop_back();
        EXPECT_FALSE(merkle_root_from_path(l[i], i, n, tampered).ok());
      }
      auto longer = path;
      longer.push_back(root);
      EXPECT_FALSE(merkle_root_from_path(l[i], i, n, longer).ok());
    }
    EXPECT_FALSE(merkle_root_from_path(l[0], n, n, {}).ok());
  }
}

TEST(Merkle, SizedRootCommitsToTheLeafCount) {
  const auto l = leaves(3);
  const Digest top = merkle_root(l);
  EXPECT_NE(sized_root(top, 3), sized_root(top, 4));
  Blake2b256 h;
  h.str(kRootTag);
  h.u64(3);
  h.update(top.data(), 32);
  EXPECT_EQ(h.final(), sized_root(top, 3));
}

TEST(Merkle, HexRoundTrip) {
  const Digest d = leaf(7);
  Digest back{};
  ASSERT_TRUE(digest_from_hex(digest_hex(d), &back));
  EXPECT_EQ(back, d);
  EXPECT_FALSE(digest_from_hex("abc", &back));
  EXPECT_FALSE(digest_from_hex(std::string(64, 'g'), &back));
}

}  // namespace
}  // namespace swarm::net
