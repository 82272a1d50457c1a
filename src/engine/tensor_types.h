// Tensor element types as GGUF stores them, one block struct per quantization
// type with its size checked at compile time, and one table from type to
// (name, elements per block, bytes per block). Adding a type means one new row.
// The numeric ids are GGUF's (ggml_type), so they can be read and written as is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace swarm {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

constexpr int kQK4_0 = 32;
constexpr int kQK8_0 = 32;
constexpr int kQK_K = 256;
constexpr int kKScaleSize = 12;

struct BlockQ4_0 {
  uint16_t d;                 // fp16 scale
  uint8_t qs[kQK4_0 / 2];     // element j in the low nibble of qs[j], j+16 in the high nibble
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block size");

struct BlockQ8_0 {
  uint16_t d;                 // fp16 scale
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block size");

// Super-block of 256: 8 sub-blocks of 32 with 6-bit scales and mins.
struct BlockQ4_K {
  uint16_t d;                 // fp16 super-block scale for the scales
  uint16_t dmin;              // fp16 super-block scale for the mins
  uint8_t scales[kKScaleSize];// 8 scales and 8 mins, 6 bits each
  uint8_t qs[kQK_K / 2];      // 4-bit quants
};
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block size");

struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];      // 5th bit of each quant
  uint8_t qs[kQK_K / 2];      // low 4 bits
};
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block size");

// Super-block of 256: 16 sub-blocks of 16 with 8-bit scales.
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];
  uint16_t d;                 // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block size");

// Activation format for dot products with K-quants (never stored in files by us).
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of groups of 16 quants
};
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block size");

struct TypeTraits {
  const char* name;     // as GGUF tools print it ("Q4_K")
  int block_size;       // elements per block; 0 if the type is unknown to us
  size_t type_size;     // bytes per block
  bool weight_ok;       // the engine computes with it as a weight type
};

// Traits of `t`; `block_size == 0` for ids this engine does not know.
const TypeTraits& type_traits(TensorType t);
bool is_known_type(uint32_t raw_type);
const char* type_name(TensorType t);
// Bytes taken by `n` elements of type `t`; `n` must be a multiple of the block size.
size_t row_size(TensorType t, int64_t n);
// Parses "F16", "q8_0", "Q4_K_M" (file types map to their main tensor type).
bool parse_type_name(const std::string& s, TensorType* out);

}  // namespace swarm
