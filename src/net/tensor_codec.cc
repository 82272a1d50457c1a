#include "net/tensor_codec.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "engine/fp16.h"

namespace swarm::net {
namespace {

// Elements we are willing to allocate for one tensor: matches the message size
// limit (a larger claim cannot be backed by data anyway).
constexpr int64_t kMaxElements = int64_t{1} << 31;

std::string shape_string(const v1::Tensor& t) {
  std::string s = "[";
  for (int i = 0; i < t.shape_size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape(i));
  return s + "]";
}

}  // namespace

size_t tensor_element_size(int dtype) {
  switch (dtype) {
    case v1::Tensor::F32:
      return 4;
    case v1::Tensor::F16:
      return 2;
    default:
      return 0;
  }
}

void encode_tensor(const float* data, int64_t rows, int64_t cols, v1::Tensor::DType dtype,
                   v1::Tensor* out) {
  out->Clear();
  out->set_dtype(dtype);
  out->add_shape(rows);
  out->add_shape(cols);
  const size_t n = static_cast<size_t>(rows * cols);
  std::string* bytes = out->mutable_data();
  if (dtype == v1::Tensor::F16) {
    bytes->resize(n * 2);
    auto* dst = reinterpret_cast<unsigned char*>(bytes->data());
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = fp32_to_fp16(data[i]);
      dst[2 * i] = static_cast<unsigned char>(h & 0xff);
      dst[2 * i + 1] = static_cast<unsigned char>(h >> 8);
    }
  } else {
    static_assert(std::endian::native == std::endian::little, "the wire is little-endian");
    bytes->assign(reinterpret_cast<const char*>(data), n * 4);
  }
}

Status decode_tensor(const v1::Tensor& t, int64_t rows, int64_t cols, std::vector<float>* out,
                     const char* what) {
  const size_t esize = tensor_element_size(t.dtype());
  if (esize == 0)
    return Status::InvalidArgument(std::string(what) + ": unknown dtype " +
                                   std::to_string(t.dtype()));
  if (t.shape_size() != 2)
    return Status::InvalidArgument(std::string(what) + ": shape " + shape_string(t) +
                                   " is not [rows, cols]");
  const int64_t r = t.shape(0), c = t.shape(1);
  if (r < 0 || c < 0 || (r > 0 && c > kMaxElements / r))
    return Status::InvalidArgument(std::string(what) + ": shape " + shape_string(t) +
                                   " is invalid");
  if ((rows >= 0 && r != rows) || c != cols)
    return Status::InvalidArgument(
        std::string(what) + ": shape " + shape_string(t) + ", expected [" +
        (rows >= 0 ? std::to_string(rows) : std::string("n")) + ", " + std::to_string(cols) + "]");
  const uint64_t n = static_cast<uint64_t>(r) * static_cast<uint64_t>(c);
  if (t.data().size() != n * esize)
    return Status::InvalidArgument(std::string(what) + ": " + std::to_string(t.data().size()) +
                                   " bytes of data, expected " + std::to_string(n * esize) +
                                   " for shape " + shape_string(t));
  out->resize(n);
  if (esize == 4) {
    if (n) std::memcpy(out->data(), t.data().data(), n * 4);
  } else {
    const auto* src = reinterpret_cast<const unsigned char*>(t.data().data());
    for (uint64_t i = 0; i < n; ++i)
      (*out)[i] = fp16_to_fp32(static_cast<uint16_t>(src[2 * i] | (src[2 * i + 1] << 8)));
  }
  // A NaN or infinity spreads through every later layer and the sampler: a
  // peer that sends one is refused, not believed.
  for (uint64_t i = 0; i < n; ++i)
    if (!std::isfinite((*out)[i])) {
      const uint64_t row = c > 0 ? i / static_cast<uint64_t>(c) : 0;
      const std::string value = std::isnan((*out)[i]) ? "NaN" : "infinity";
      out->clear();
      return Status::InvalidArgument(std::string(what) + ": " + value + " at row " +
                                     std::to_string(row) + ", column " +
                                     std::to_string(i - row * static_cast<uint64_t>(c)) +
                                     " (hidden states must be finite)");
    }
  return Status::Ok();
}

}  // namespace swarm::net
