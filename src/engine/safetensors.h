// Reading the header of a .safetensors file (Hugging Face's weight format).
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON, then the
// tensor bytes. The JSON maps each tensor name to {"dtype": "F32", "shape":
// [rows, cols], "data_offsets": [begin, end]}, offsets relative to the first
// byte after the header; an optional "__metadata__" maps strings to strings.
// See https://github.com/huggingface/safetensors (README, "Format").
//
// Only the header is read; the tensor bytes are left for the caller to map.
// Everything is bounds-checked: a hostile file gives a Status, never a crash.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/status.h"

namespace swarm {

// Headers larger than this are refused (the reference implementation's limit).
constexpr uint64_t kSafetensorsMaxHeader = 100ull << 20;

struct SafetensorsTensor {
  std::string name;
  std::string dtype;           // as the file spells it: "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;  // safetensors (row-major) order: shape[0] is the outermost
  uint64_t begin = 0;          // relative to data_start
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t file_size = 0;
  uint64_t header_len = 0;
  uint64_t data_start = 0;                 // 8 + header_len: absolute offset of the data section
  std::vector<SafetensorsTensor> tensors;  // in the order of their data (by begin)
  std::map<std::string, std::string> metadata;  // "__metadata__", string values only
};

// Bytes per element of a safetensors dtype, 0 if unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// Parses and validates a header already in memory; `file_size` is the size of the
// whole file and `what` names the file in error messages. Checks: every dtype is
// known, (end - begin) == elements * dtype size, offsets do not overlap and lie
// inside the file.
Result<SafetensorsHeader> parse_safetensors_header(const std::string& json_text, uint64_t file_size,
                                                   const std::string& what);

// Reads and validates the header of the file at `path` (only the header bytes).
Result<SafetensorsHeader> read_safetensors_header(const std::string& path);

}  // namespace swarm
