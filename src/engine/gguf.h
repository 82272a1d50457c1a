// GGUF (v2 and v3) reader: metadata of every value type, the tensor table, and
// the checks that make a hostile or truncated file an error instead of a crash.
// The format is specified in ggml's docs/gguf.md; doc/gguf.md here says what we
// check. Tensor bytes are not read here: the model maps what it needs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/model_source.h"
#include "engine/status.h"

namespace swarm {

enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

const char* gguf_value_type_name(GgufValueType t);

// One metadata value. Scalars use the field of their kind; arrays keep their
// elements in the vector of their element kind (integers and bools in `ints`,
// floats in `floats`, strings in `strings`, nested arrays in `arrays`).
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;
  GgufValueType elem_type = GgufValueType::UINT8;  // arrays only
  int64_t i = 0;         // every integer type and bool (uint64 stored bit for bit)
  double f = 0;          // FLOAT32, FLOAT64
  std::string str;       // STRING
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
  std::vector<GgufValue> arrays;

  bool is_integer() const;
  bool is_float() const { return type == GgufValueType::FLOAT32 || type == GgufValueType::FLOAT64; }
  size_t array_size() const;
  std::string ToString() const;  // short human-readable rendering (arrays summarised)
};

struct GgufFile {
  std::string path;
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // where the tensor data section starts
  uint64_t file_size = 0;
  std::vector<std::pair<std::string, GgufValue>> kv;  // in file order
  std::vector<TensorInfo> tensors;                    // offsets made absolute

  const GgufValue* find(const std::string& key) const;
  // Typed getters: NotFound if absent, InvalidArgument if of the wrong kind.
  Result<int64_t> get_int(const std::string& key) const;
  Result<double> get_float(const std::string& key) const;
  Result<std::string> get_string(const std::string& key) const;
};

// Parses the header and tensor table of `path` and checks every tensor's type,
// shape, alignment and extent against the file.
Result<GgufFile> read_gguf(const std::string& path);

// read_gguf + the architecture's hyper-parameters and the tensors it requires,
// as a ModelSource. Architectures: llama, qwen2.
Result<ModelSource> load_gguf_model(const std::string& path);

}  // namespace swarm
