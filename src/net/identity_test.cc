// Node identities: the key file is private (0600, and a readable one is refused),
// survives a save and load unchanged, and the node id and signatures are what
// Ed25519 and BLAKE2b say they are.
#include "net/identity.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace swarm::net {
namespace {

class IdentityFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/identity_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    ASSERT_EQ(::mkdir(dir_.c_str(), 0700), 0);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  static mode_t mode_of(const std::string& path) {
    struct stat st;
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  static std::string read(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  static void write(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  }
  std::string dir_;
};

TEST(Identity, RfcVectorGivesKnownPublicKeyNodeIdAndSignature) {
  // RFC 8032 section 7.1, TEST 1 (empty message). The node id is BLAKE2b-160 of
  // the public key, computed independently with Python's hashlib.
  std::array<uint8_t, kSeedBytes> seed;
  auto raw = from_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  ASSERT_TRUE(raw.ok());
  std::copy(raw->begin(), raw->end(), seed.begin());
  auto id = Identity::FromSeed(seed);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(to_hex(id->public_key().data(), kPublicKeyBytes),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  EXPECT_EQ(id->node_id(), "1b3517cf5af0ac86b8efe88452908c45f5c7e079");
  EXPECT_EQ(node_id_of(id->public_key()), id->node_id());
  const Signature sig = id->sign("");
  EXPECT_EQ(to_hex(sig.data(), sig.size()),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
            "701cf9b46bd25bf5f0595bbe24655141438e7a100b");
}

TEST(Identity, SignVerifyAcceptsOnlyTheSignedMessageAndKey) {
  auto a = Identity::Generate(), b = Identity::Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->node_id(), b->node_id());
  EXPECT_EQ(a->node_id().size(), 2 * kNodeIdBytes);
  const std::string msg = "layers 0:16 of model abc";
  Signature sig = a->sign(msg);
  EXPECT_TRUE(Identity::verify(a->public_key(), msg, sig));
  EXPECT_FALSE(Identity::verify(b->public_key(), msg, sig));
  EXPECT_FALSE(Identity::verify(a->public_key(), msg + " ", sig));
  std::string other = msg;
  other[3] ^= 1;
  EXPECT_FALSE(Identity::verify(a->public_key(), other, sig));
  for (size_t i = 0; i < sig.size(); i += 7) {
    Signature bad = sig;
    bad[i] ^= 0x40;
    EXPECT_FALSE(Identity::verify(a->public_key(), msg, bad)) << "byte " << i;
  }
}

TEST(Identity, HexIsStrictLowercase) {
  EXPECT_EQ(to_hex(reinterpret_cast<const uint8_t*>("\x00\xff\x1a"), 3), "00ff1a");
  EXPECT_EQ(*from_hex("00ff1a"), std::string("\x00\xff\x1a", 3));
  EXPECT_FALSE(from_hex("00FF").ok());
  EXPECT_FALSE(from_hex("abc").ok());
  EXPECT_FALSE(from_hex("zz").ok());
}

TEST_F(IdentityFiles, CreatedFileIsMode0600EvenUnderPermissiveUmask) {
  const mode_t old = ::umask(0);
  const std::string path = dir_ + "/sub/dir/node.key";
  auto id = Identity::LoadOrCreate(path);
  ::umask(old);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(mode_of(dir_ + "/sub/dir"), 0700u);
  EXPECT_EQ(read(path).rfind(std::string(kKeyFileMagic) + "\n", 0), 0u);
}

TEST_F(IdentityFiles, SaveLoadRoundTripKeepsTheIdentity) {
  const std::string path = dir_ + "/node.key";
  auto a = Identity::Generate();
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->Save(path).ok());
  auto b = Identity::Load(path);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(a->public_key(), b->public_key());
  EXPECT_EQ(a->node_id(), b->node_id());
  EXPECT_TRUE(Identity::verify(a->public_key(), "x", b->sign("x")));
  // LoadOrCreate of an existing file loads it, it does not replace it.
  auto c = Identity::LoadOrCreate(path);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->node_id(), a->node_id());
}

TEST_F(IdentityFiles, SaveRefusesToOverwriteUnlessAsked) {
  const std::string path = dir_ + "/node.key";
  auto a = Identity::Generate(), b = Identity::Generate();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->Save(path).ok());
  const std::string before = read(path);
  Status st = b->Save(path);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find(path), std::string::npos) << st.ToString();
  EXPECT_EQ(read(path), before);
  ASSERT_TRUE(b->Save(path, /*overwrite=*/true).ok());
  EXPECT_EQ(mode_of(path), 0600u);
  EXPECT_EQ(Identity::Load(path)->node_id(), b->node_id());
}

TEST_F(IdentityFiles, RefusesAKeyFileOthersCanRead) {
  const std::string path = dir_ + "/node.key";
  auto a = Identity::Generate();
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(a->Save(path).ok());
  for (mode_t mode : {0644u, 0640u, 0604u, 0602u}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto b = Identity::Load(path);
    ASSERT_FALSE(b.ok()) << std::oct << mode;
    char m[8];
    std::snprintf(m, sizeof m, "%04o", static_cast<unsigned>(mode));
    EXPECT_NE(b.status().message().find(path), std::string::npos) << b.status().ToString();
    EXPECT_NE(b.status().message().find(m), std::string::npos) << b.status().ToString();
    EXPECT_FALSE(Identity::LoadOrCreate(path).ok());  // and does not replace it
  }
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);  // read-only for the owner is fine
  EXPECT_TRUE(Identity::Load(path).ok());
}

TEST_F(IdentityFiles, MalformedKeyFilesAreErrorsNamingTheFile) {
  auto a = Identity::Generate();
  ASSERT_TRUE(a.ok());
  const std::string good = dir_ + "/good.key";
  ASSERT_TRUE(a->Save(good).ok());
  const std::string text = read(good);
  std::string flipped = text;  // a digit of the public-key half changed
  flipped[flipped.size() - 2] = flipped[flipped.size() - 2] == '0' ? '1' : '0';
  std::string upper = text;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::vector<std::string> bad = {
      "",
      "swarm-ed25519-v2\n" + text.substr(text.find('\n') + 1),
      text.substr(0, text.size() - 10) + "\n",
      text.substr(0, text.size() - 1) + "00\n",
      flipped,
      std::string(kKeyFileMagic) + "\n" + upper.substr(upper.find('\n') + 1),
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    const std::string path = dir_ + "/bad" + std::to_string(i) + ".key";
    write(path, bad[i], 0600);
    auto id = Identity::Load(path);
    ASSERT_FALSE(id.ok()) << "case " << i;
    EXPECT_EQ(id.status().code(), Status::Code::kCorruption) << id.status().ToString();
    EXPECT_NE(id.status().message().find(path), std::string::npos) << id.status().ToString();
  }
  auto missing = Identity::Load(dir_ + "/none.key");
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  EXPECT_FALSE(Identity::Load(dir_).ok());  // a folder is not a key file
}

}  // namespace
}  // namespace swarm::net
