// Writes GGUF v3 files that llama.cpp and other GGUF readers load: metadata of
// any value type, then the tensor table, then each tensor's bytes at an aligned
// offset. Tensors are streamed one at a time, so a file larger than memory can
// be written.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "engine/gguf.h"
#include "engine/status.h"
#include "engine/tensor_types.h"

namespace swarm {

class GgufWriter {
 public:
  GgufWriter() = default;
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, in the order added.
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  void set_value(const std::string& key, GgufValue v);

  // Declares a tensor; `shape` in GGUF order (shape[0] innermost). Its data must
  // be given to write_tensor in declaration order, row_size(type, shape[0]) *
  // rows bytes in all.
  void add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& shape);

  // Writes magic, metadata and tensor table to `path`, with tensor data aligned
  // to general.alignment (default 32), which must be a positive power of two.
  Status begin(const std::string& path);
  // Appends (part of) the next tensor's bytes; a tensor may come in several calls.
  Status write_tensor_data(const void* data, size_t n);
  // Checks every declared byte was written and closes the file.
  Status finish();

  // Bytes of tensor data declared, and given to write_tensor_data so far: how
  // far a conversion is, for its progress bar.
  uint64_t tensor_bytes() const { return tensor_bytes_; }
  uint64_t tensor_bytes_written() const { return tensor_bytes_written_; }

 private:
  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    uint64_t offset;  // relative to the data section
  };
  Status write_raw(const void* p, size_t n);
  Status pad_to(uint64_t alignment);

  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<PendingTensor> tensors_;
  uint64_t alignment_ = 32;
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t written_ = 0;        // bytes written to the file so far
  uint64_t data_start_ = 0;
  size_t current_ = 0;          // tensor being written
  uint64_t current_done_ = 0;   // bytes of it written
  uint64_t tensor_bytes_ = 0;
  uint64_t tensor_bytes_written_ = 0;
};

}  // namespace swarm
