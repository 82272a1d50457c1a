#include "engine/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace swarm {
namespace {

constexpr uint64_t kHuge = 2ull << 20;

// A file of `size` bytes whose byte i is a fixed function of i.
class MappedFileTest : public testing::Test {
 protected:
  void SetUp() override {
    path_ = testing::TempDir() + "mapped_file_test_" + std::to_string(::getpid()) + ".bin";
    std::vector<uint8_t> bytes(kSize);
    for (size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<uint8_t>((i * 131 + i / 4096) & 0xFF);
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
  }
  void TearDown() override { std::remove(path_.c_str()); }

  static uint8_t byte_at(uint64_t i) { return static_cast<uint8_t>((i * 131 + i / 4096) & 0xFF); }
  void expect_contents(const MappedRegion& r, uint64_t offset, uint64_t length) {
    for (uint64_t i = 0; i < length; i += 4093)
      ASSERT_EQ(r.data()[i], byte_at(offset + i)) << "byte " << offset + i;
    ASSERT_EQ(r.data()[length - 1], byte_at(offset + length - 1));
  }

  static constexpr size_t kSize = 9 * kHuge + 12345;
  std::string path_;
};

// The mapping sits where the kernel can back it with 2 MiB pages: its address and
// the file offset agree modulo 2 MiB, whatever the offset.
TEST_F(MappedFileTest, MapsAtAnAddressCongruentToTheFileOffset) {
  for (uint64_t offset : {uint64_t{0}, uint64_t{4096}, kHuge + 777, 3 * kHuge - 1}) {
    const uint64_t length = 5 * kHuge + 3;
    auto r = MappedRegion::Map(path_, offset, length);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(reinterpret_cast<uintptr_t>((*r)->data()) % kHuge, offset % kHuge)
        << "offset " << offset;
    expect_contents(**r, offset, length);
  }
}

// Read in at load, with the same bytes; what the kernel reports as huge never
// exceeds the mapping.
TEST_F(MappedFileTest, PopulatedMappingHasTheFilesBytes) {
  const uint64_t offset = kHuge / 2 + 64, length = 7 * kHuge;
  auto r = MappedRegion::MapPopulated(path_, offset, length);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  expect_contents(**r, offset, length);
  EXPECT_LE((*r)->huge_mapped_bytes(), (*r)->mapped_bytes());
  auto copy = MappedRegion::Read(path_, offset, length);
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  expect_contents(**copy, offset, length);
  EXPECT_LE((*copy)->huge_mapped_bytes(), (*copy)->mapped_bytes());
}

// Whoever watches a load hears the bytes read in so far, growing to the whole
// span (a mapping rounds it out to pages), and gets the same bytes.
TEST_F(MappedFileTest, ReadingInReportsItsProgress) {
  const uint64_t offset = kHuge + 100, length = 7 * kHuge + 5;
  for (bool read : {false, true}) {
    std::vector<uint64_t> heard;
    const ProgressCallback note = [&](uint64_t done) { heard.push_back(done); };
    auto r = read ? MappedRegion::Read(path_, offset, length, note)
                  : MappedRegion::MapPopulated(path_, offset, length, note);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    expect_contents(**r, offset, length);
    ASSERT_FALSE(heard.empty()) << (read ? "Read" : "MapPopulated");
    // It grows, but may start again once: a mapping whose pages came in as 4 KiB
    // ones reads them again as huge pages.
    int restarts = 0;
    for (size_t i = 1; i < heard.size(); ++i) restarts += heard[i] <= heard[i - 1];
    EXPECT_LE(restarts, read ? 0 : 1);
    EXPECT_GE(heard.back(), length);
    EXPECT_LE(heard.back(), (*r)->mapped_bytes());
  }
}

TEST_F(MappedFileTest, ARangePastTheEndIsRefusedByName) {
  using Open =
      std::function<Result<std::unique_ptr<MappedRegion>>(const std::string&, uint64_t, uint64_t)>;
  for (const Open& open : std::vector<Open>{&MappedRegion::Map,
                                            [](const std::string&p, uint64_t o, uint64_t n) {
                                              return MappedRegion::MapPopulated(p, o, n);
                                            },
                                            [](const std::string&p, uint64_t o, uint64_t n) {
                                              return MappedRegion::Read(p, o, n);
                                            }}) {
    auto r = open(path_, kSize - 10, 11);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().ToString().find(path_), std::string::npos) << r.status().ToString();
    EXPECT_NE(r.status().ToString().find("past the end"), std::string::npos)
        << r.status().ToString();
  }
}

}  // namespace
}  // namespace swarm
