#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/unique_fd.h"
#include <nlohmann/json.hpp>

namespace swarm {
namespace {

using json = nlohmann::json;


// Reads exactly `n` bytes at `offset`; false on a short read or an error.
bool pread_all(int fd, void* buf, size_t n, uint64_t offset) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

Status parse_tensor(const std::string& name, const json& entry, uint64_t data_size,
                    const std::string& what, SafetensorsTensor* out) {
  const std::string where = what + ": tensor '" + name + "'";
  if (!entry.is_object()) return Status::Corruption(where + ": entry is not an object");
  auto dt = entry.find("dtype");
  auto sh = entry.find("shape");
  auto off = entry.find("data_offsets");
  if (dt == entry.end() || !dt->is_string())
    return Status::Corruption(where + ": missing or non-string 'dtype'");
  if (sh == entry.end() || !sh->is_array())
    return Status::Corruption(where + ": missing or non-array 'shape'");
  if (off == entry.end() || !off->is_array() || off->size() != 2)
    return Status::Corruption(where + ": 'data_offsets' must be an array [begin, end]");

  out->name = name;
  out->dtype = dt->get<std::string>();
  const size_t esize = safetensors_dtype_size(out->dtype);
  if (esize == 0) return Status::Unsupported(where + ": unknown dtype '" + out->dtype + "'");

  // Elements, with overflow checks: a hostile shape must not wrap around.
  uint64_t n_elem = 1;
  out->shape.clear();
  for (const json& d : *sh) {
    if (!d.is_number_unsigned())
      return Status::Corruption(where + ": shape entries must be non-negative integers");
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(n_elem, v, &n_elem))
      return Status::Corruption(where + ": shape is too large");
    out->shape.push_back(static_cast<int64_t>(v));
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(n_elem, static_cast<uint64_t>(esize), &nbytes))
    return Status::Corruption(where + ": shape is too large");

  const json& b = (*off)[0];
  const json& e = (*off)[1];
  if (!b.is_number_unsigned() || !e.is_number_unsigned())
    return Status::Corruption(where + ": data_offsets must be non-negative integers");
  out->begin = b.get<uint64_t>();
  out->end = e.get<uint64_t>();
  if (out->end < out->begin)
    return Status::Corruption(where + ": data_offsets end " + std::to_string(out->end) +
                              " is before begin " + std::to_string(out->begin));
  if (out->end - out->begin != nbytes)
    return Status::Corruption(where + ": data_offsets span " +
                              std::to_string(out->end - out->begin) + " bytes but dtype " +
                              out->dtype + " x shape needs " + std::to_string(nbytes));
  if (out->end > data_size)
    return Status::Corruption(where + ": data [" + std::to_string(out->begin) + ", " +
                              std::to_string(out->end) + ") extends past the end of the file (" +
                              std::to_string(data_size) + " data bytes)");
  return Status::Ok();
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8},
  };
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

Result<SafetensorsHeader> parse_safetensors_header(const std::string& json_text, uint64_t file_size,
                                                   const std::string& what) {
  SafetensorsHeader h;
  h.file_size = file_size;
  h.header_len = json_text.size();
  h.data_start = 8 + h.header_len;
  if (h.data_start > file_size)
    return Status::Corruption(what + ": header length " + std::to_string(h.header_len) +
                              " is larger than the file (" + std::to_string(file_size) + " bytes)");
  const uint64_t data_size = file_size - h.data_start;

  // The JSON library throws on type errors; nothing escapes this function.
  try {
    json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) return Status::Corruption(what + ": header is not valid JSON");
    if (!root.is_object()) return Status::Corruption(what + ": header is not a JSON object");

    for (auto it = root.begin(); it != root.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it.value().is_object())
          return Status::Corruption(what + ": __metadata__ is not an object");
        for (auto m = it.value().begin(); m != it.value().end(); ++m)
          if (m.value().is_string()) h.metadata[m.key()] = m.value().get<std::string>();
        continue;
      }
      SafetensorsTensor t;
      SWARM_RETURN_IF_ERROR(parse_tensor(it.key(), it.value(), data_size, what, &t));
      h.tensors.push_back(std::move(t));
    }
  } catch (const std::exception& e) {
    return Status::Corruption(what + ": bad header: " + e.what());
  }

  std::sort(h.tensors.begin(), h.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  // Sorted by begin, two tensors overlap exactly when one starts before the
  // previous one ends (empty tensors take no bytes and overlap nothing).
  const SafetensorsTensor* prev = nullptr;
  for (const SafetensorsTensor& t : h.tensors) {
    if (t.begin == t.end) continue;
    if (prev != nullptr && t.begin < prev->end)
      return Status::Corruption(
          what + ": tensor '" + t.name + "' data [" + std::to_string(t.begin) + ", " +
          std::to_string(t.end) + ") overlaps tensor '" + prev->name + "' [" +
          std::to_string(prev->begin) + ", " + std::to_string(prev->end) + ")");
    prev = &t;
  }
  return h;
}

Result<SafetensorsHeader> read_safetensors_header(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": cannot open: " + std::strerror(err));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return Status::IOError(path + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8)
    return Status::Corruption(path + ": truncated: " + std::to_string(file_size) +
                              " bytes, too short for the 8-byte header length");

  unsigned char len_bytes[8];
  if (!pread_all(fd.get(), len_bytes, sizeof(len_bytes), 0))
    return Status::IOError(path + ": cannot read the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > file_size - 8)
    return Status::Corruption(path + ": header length " + std::to_string(header_len) +
                              " is larger than the file (" + std::to_string(file_size) + " bytes)");
  if (header_len > kSafetensorsMaxHeader)
    return Status::Corruption(path + ": header length " + std::to_string(header_len) +
                              " exceeds the limit of " + std::to_string(kSafetensorsMaxHeader));

  std::string text(header_len, '\0');
  if (header_len > 0 && !pread_all(fd.get(), text.data(), header_len, 8))
    return Status::IOError(path + ": cannot read the " + std::to_string(header_len) +
                           "-byte header");
  return parse_safetensors_header(text, file_size, path);
}

}  // namespace swarm
