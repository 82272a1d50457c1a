// Tensor codec: exact F32 round trips, F16 rounding as the fp16 helpers define
// it, and every malformed tensor a peer could send rejected with a Status.
#include "net/tensor_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "engine/fp16.h"
#include "net/status_convert.h"

namespace swarm::net {
namespace {

std::vector<float> sample_rows(int64_t rows, int64_t cols) {
  std::vector<float> v(rows * cols);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37f * i) * (1 + i % 13) * 0.1f;
  v[0] = -0.0f;
  if (v.size() > 1) v[1] = 65504.0f;  // largest half
  return v;
}

TEST(TensorCodec, F32RoundTripIsExact) {
  const auto v = sample_rows(3, 16);
  v1::Tensor t;
  encode_tensor(v.data(), 3, 16, v1::Tensor::F32, &t);
  EXPECT_EQ(t.data().size(), 3u * 16 * 4);
  std::vector<float> out;
  ASSERT_TRUE(decode_tensor(t, 3, 16, &out).ok());
  ASSERT_EQ(out.size(), v.size());
  EXPECT_EQ(0, std::memcmp(out.data(), v.data(), v.size() * 4));
}

TEST(TensorCodec, F16RoundTripRoundsEachElement) {
  const auto v = sample_rows(2, 8);
  v1::Tensor t;
  encode_tensor(v.data(), 2, 8, v1::Tensor::F16, &t);
  EXPECT_EQ(t.data().size(), 2u * 8 * 2);
  std::vector<float> out;
  ASSERT_TRUE(decode_tensor(t, 2, 8, &out).ok());
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(out[i], fp16_to_fp32(fp32_to_fp16(v[i]))) << i;
  // The bytes are little-endian halves.
  const uint16_t h = fp32_to_fp16(v[1]);
  EXPECT_EQ(static_cast<unsigned char>(t.data()[2]), h & 0xff);
  EXPECT_EQ(static_cast<unsigned char>(t.data()[3]), h >> 8);
}

TEST(TensorCodec, SurvivesSerialization) {
  const auto v = sample_rows(5, 4);
  v1::Tensor t;
  encode_tensor(v.data(), 5, 4, v1::Tensor::F32, &t);
  v1::Tensor back;
  ASSERT_TRUE(back.ParseFromString(t.SerializeAsString()));
  std::vector<float> out;
  ASSERT_TRUE(decode_tensor(back, -1, 4, &out).ok());  // any row count
  EXPECT_EQ(out, v);
}

TEST(TensorCodec, EmptyTensorOfZeroRows) {
  v1::Tensor t;
  encode_tensor(nullptr, 0, 4, v1::Tensor::F16, &t);
  std::vector<float> out{1.0f};
  ASSERT_TRUE(decode_tensor(t, 0, 4, &out).ok());
  EXPECT_TRUE(out.empty());
}

class Malformed : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto v = sample_rows(2, 4);
    encode_tensor(v.data(), 2, 4, v1::Tensor::F32, &t);
  }
  Status decode() { return decode_tensor(t, 2, 4, &out, "Step.hidden"); }
  v1::Tensor t;
  std::vector<float> out;
};

TEST_F(Malformed, UnknownDtype) {
  t.set_dtype(static_cast<v1::Tensor::DType>(7));
  const Status s = decode();
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("dtype"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("Step.hidden"), std::string::npos) << s.message();
}

TEST_F(Malformed, UnknownDtypeAfterParsing) {
  // proto3 keeps an unknown enum value as its number; it must still be refused.
  t.set_dtype(static_cast<v1::Tensor::DType>(1000));
  v1::Tensor parsed;
  ASSERT_TRUE(parsed.ParseFromString(t.SerializeAsString()));
  EXPECT_EQ(static_cast<int>(parsed.dtype()), 1000);
  EXPECT_FALSE(decode_tensor(parsed, 2, 4, &out).ok());
}

TEST_F(Malformed, WrongRank) {
  t.add_shape(1);
  EXPECT_EQ(decode().code(), Status::Code::kInvalidArgument);
  t.clear_shape();
  t.add_shape(8);
  EXPECT_EQ(decode().code(), Status::Code::kInvalidArgument);
  t.clear_shape();
  EXPECT_EQ(decode().code(), Status::Code::kInvalidArgument);
}

TEST_F(Malformed, WrongRowsOrCols) {
  t.set_shape(0, 4);
  t.set_shape(1, 2);  // same element count, wrong shape
  const Status s = decode();
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("expected [2, 4]"), std::string::npos) << s.message();
  t.set_shape(0, 1);
  t.set_shape(1, 4);
  EXPECT_FALSE(decode().ok());
}

TEST_F(Malformed, NegativeDimensions) {
  t.set_shape(0, -2);
  t.set_shape(1, -4);
  EXPECT_FALSE(decode_tensor(t, -1, -4, &out).ok());
  t.set_shape(0, -1);
  t.set_shape(1, 4);
  EXPECT_FALSE(decode_tensor(t, -1, 4, &out).ok());
}

TEST_F(Malformed, ShortAndLongData) {
  t.mutable_data()->pop_back();
  const Status s = decode();
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("31 bytes"), std::string::npos) << s.message();
  t.mutable_data()->append("xx");
  EXPECT_FALSE(decode().ok());
  t.clear_data();
  EXPECT_FALSE(decode().ok());
}

TEST_F(Malformed, GiantClaimedShapeDoesNotAllocate) {
  const int64_t big = std::numeric_limits<int64_t>::max() / 2;
  t.set_shape(0, big);
  t.set_shape(1, 4);
  EXPECT_FALSE(decode_tensor(t, -1, 4, &out).ok());
  t.set_shape(0, int64_t{1} << 40);  // product fits in 64 bits but not in memory
  EXPECT_FALSE(decode_tensor(t, -1, 4, &out).ok());
  t.set_shape(0, int64_t{1} << 62);
  t.set_shape(1, 1 << 4);  // product overflows 64 bits
  EXPECT_FALSE(decode_tensor(t, -1, 1 << 4, &out).ok());
}

TEST_F(Malformed, F16WithF32SizedData) {
  t.set_dtype(v1::Tensor::F16);
  EXPECT_FALSE(decode().ok());
}

TEST_F(Malformed, NonFiniteValuesAreRefusedWithTheirPlace) {
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    std::vector<float> v = sample_rows(2, 4);
    v[6] = bad;  // row 1, column 2
    for (const auto dtype : {v1::Tensor::F32, v1::Tensor::F16}) {
      encode_tensor(v.data(), 2, 4, dtype, &t);
      const Status st = decode();
      ASSERT_FALSE(st.ok());
      EXPECT_NE(st.message().find("Step.hidden"), std::string::npos) << st.message();
      EXPECT_NE(st.message().find("row 1, column 2"), std::string::npos) << st.message();
      EXPECT_NE(st.message().find(std::isnan(bad) ? "NaN" : "infinity"), std::string::npos)
          << st.message();
    }
  }
}

TEST(StatusConvert, RoundTripsTheCodesWeUse) {
  for (Status s : {Status::InvalidArgument("a"), Status::NotFound("b"), Status::ResourceExhausted("c"),
                   Status::Internal("d"), Status::Unavailable("e"), Status::Unsupported("f"), Status::Corruption("g"),
                   Status::DeadlineExceeded("h")}) {
    const grpc::Status g = to_grpc(s);
    EXPECT_EQ(from_grpc(g).code(), s.code());
    EXPECT_EQ(g.error_message(), s.message());
  }
  EXPECT_TRUE(to_grpc(Status::Ok()).ok());
  // A node's local I/O failure reaches a client as "unavailable": the node cannot serve now.
  EXPECT_EQ(from_grpc(to_grpc(Status::IOError("disk"))).code(), Status::Code::kUnavailable);
  EXPECT_EQ(from_grpc(grpc::StatusCode::FAILED_PRECONDITION, "x").message(), "FAILED_PRECONDITION: x");
  EXPECT_STREQ(grpc_code_name(grpc::StatusCode::RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
  EXPECT_STREQ(grpc_code_name(99), "UNKNOWN");
}

}  // namespace
}  // namespace swarm::net
