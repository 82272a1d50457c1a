#include "engine/tensor_types.h"

#include <algorithm>
#include <cctype>

namespace swarm {
namespace {

struct Row {
  TensorType type;
  TypeTraits traits;
};

constexpr Row kTable[] = {
    {TensorType::F32, {"F32", 1, 4, true}},
    {TensorType::F16, {"F16", 1, 2, true}},
    {TensorType::Q4_0, {"Q4_0", kQK4_0, sizeof(BlockQ4_0), true}},
    {TensorType::Q4_1, {"Q4_1", 32, 20, false}},
    {TensorType::Q5_0, {"Q5_0", 32, 22, false}},
    {TensorType::Q5_1, {"Q5_1", 32, 24, false}},
    {TensorType::Q8_0, {"Q8_0", kQK8_0, sizeof(BlockQ8_0), true}},
    {TensorType::Q8_1, {"Q8_1", 32, 36, false}},
    {TensorType::Q2_K, {"Q2_K", kQK_K, 84, false}},
    {TensorType::Q3_K, {"Q3_K", kQK_K, 110, false}},
    {TensorType::Q4_K, {"Q4_K", kQK_K, sizeof(BlockQ4_K), true}},
    {TensorType::Q5_K, {"Q5_K", kQK_K, sizeof(BlockQ5_K), true}},
    {TensorType::Q6_K, {"Q6_K", kQK_K, sizeof(BlockQ6_K), true}},
    {TensorType::Q8_K, {"Q8_K", kQK_K, sizeof(BlockQ8_K), false}},
    {TensorType::I8, {"I8", 1, 1, false}},
    {TensorType::I16, {"I16", 1, 2, false}},
    {TensorType::I32, {"I32", 1, 4, false}},
    {TensorType::I64, {"I64", 1, 8, false}},
    {TensorType::F64, {"F64", 1, 8, false}},
    {TensorType::BF16, {"BF16", 1, 2, true}},
};

constexpr TypeTraits kUnknown = {"unknown", 0, 0, false};

}  // namespace

const TypeTraits& type_traits(TensorType t) {
  for (const Row& r : kTable)
    if (r.type == t) return r.traits;
  return kUnknown;
}

bool is_known_type(uint32_t raw_type) {
  return type_traits(static_cast<TensorType>(raw_type)).block_size != 0;
}

const char* type_name(TensorType t) { return type_traits(t).name; }

size_t row_size(TensorType t, int64_t n) {
  const TypeTraits& tr = type_traits(t);
  if (tr.block_size == 0) return 0;
  return static_cast<size_t>(n / tr.block_size) * tr.type_size;
}

bool parse_type_name(const std::string& s, TensorType* out) {
  std::string u = s;
  std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::toupper(c); });
  // File-type names (llama.cpp's quantize presets) name their dominant tensor type.
  if (u == "Q4_K_M" || u == "Q4_K_S") u = "Q4_K";
  if (u == "Q5_K_M" || u == "Q5_K_S") u = "Q5_K";
  for (const Row& r : kTable) {
    if (u == r.traits.name) {
      *out = r.type;
      return true;
    }
  }
  return false;
}

}  // namespace swarm
