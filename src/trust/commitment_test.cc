#include "trust/commitment.h"

#include <gtest/gtest.h>

namespace swarm::trust {
namespace {

TEST(CommitmentTest, WindowHashesFollowFromRowHashes) {
  std::vector<float> rows(6 * 4);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>(i) * 0.5f;
  const auto all = row_hashes(rows.data(), 6, 4 * sizeof(float));
  const auto tail = row_hashes(rows.data() + 2 * 4, 4, 4 * sizeof(float));
  EXPECT_EQ(combine_rows(all.data() + 2, 4), combine_rows(tail));
  EXPECT_NE(combine_rows(all.data(), 4), combine_rows(tail));
}

TEST(CommitmentTest, PrefixHashesRewindToTheSameValue) {
  const int32_t a[] = {1, 2, 3, 4};
  PrefixHashes p;
  p.append(a, 2);
  const Hash two = p.at(2);
  p.append(a + 2, 2);
  EXPECT_EQ(p.at(4), PrefixHashes::of(a, 4));
  p.truncate(2);
  EXPECT_EQ(p.length(), 2);
  EXPECT_EQ(p.at(2), two);
  const int32_t b[] = {9};
  p.append(b, 1);
  EXPECT_NE(p.at(3), PrefixHashes::of(a, 3));
}

TEST(CommitmentTest, SignedCommitmentVerifiesAndAnyChangeBreaksIt) {
  auto id = net::Identity::Generate();
  ASSERT_TRUE(id.ok());
  v1::Commitment c;
  c.set_model_id("m");
  c.set_session_id("s");
  c.set_step_id(7);
  c.set_position(3);
  c.set_n_tokens(1);
  c.set_first_layer(0);
  c.set_last_layer(4);
  const Hash h = hash_bytes("x", 1);
  c.set_output_hash(std::string(as_view(h)));
  sign(&c, id.value());
  EXPECT_TRUE(verify_signature(c).ok());
  v1::Commitment forged = c;
  forged.set_position(4);
  EXPECT_FALSE(verify_signature(forged).ok());
  forged = c;
  forged.set_output_hash(std::string(as_view(hash_bytes("y", 1))));
  EXPECT_FALSE(verify_signature(forged).ok());
  forged = c;
  forged.clear_signature();
  EXPECT_NE(verify_signature(forged).message().find("signature"), std::string::npos);
}

}  // namespace
}  // namespace swarm::trust
