#include "engine/gguf_writer.h"

#include <cerrno>
#include <cstring>

namespace swarm {

GgufWriter::~GgufWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void GgufWriter::set_value(const std::string& key, GgufValue v) {
  for (auto& [k, old] : kv_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

namespace {

GgufValue integer(GgufValueType t, int64_t i) {
  GgufValue v;
  v.type = t;
  v.i = i;
  return v;
}

GgufValue array_of(GgufValueType elem) {
  GgufValue v;
  v.type = GgufValueType::ARRAY;
  v.elem_type = elem;
  return v;
}

}  // namespace

void GgufWriter::set_u32(const std::string& key, uint32_t x) { set_value(key, integer(GgufValueType::UINT32, x)); }
void GgufWriter::set_i32(const std::string& key, int32_t x) { set_value(key, integer(GgufValueType::INT32, x)); }
void GgufWriter::set_u64(const std::string& key, uint64_t x) {
  set_value(key, integer(GgufValueType::UINT64, static_cast<int64_t>(x)));
}
void GgufWriter::set_bool(const std::string& key, bool x) { set_value(key, integer(GgufValueType::BOOL, x ? 1 : 0)); }
void GgufWriter::set_f32(const std::string& key, float x) {
  GgufValue v;
  v.type = GgufValueType::FLOAT32;
  v.f = x;
  set_value(key, std::move(v));
}
void GgufWriter::set_string(const std::string& key, const std::string& x) {
  GgufValue v;
  v.type = GgufValueType::STRING;
  v.str = x;
  set_value(key, std::move(v));
}
void GgufWriter::set_strings(const std::string& key, const std::vector<std::string>& x) {
  GgufValue v = array_of(GgufValueType::STRING);
  v.strings = x;
  set_value(key, std::move(v));
}
void GgufWriter::set_f32s(const std::string& key, const std::vector<float>& x) {
  GgufValue v = array_of(GgufValueType::FLOAT32);
  v.floats.assign(x.begin(), x.end());
  set_value(key, std::move(v));
}
void GgufWriter::set_i32s(const std::string& key, const std::vector<int32_t>& x) {
  GgufValue v = array_of(GgufValueType::INT32);
  v.ints.assign(x.begin(), x.end());
  set_value(key, std::move(v));
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& shape) {
  int64_t rows = 1;
  for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
  // Offsets are placed by begin(), once the alignment is final.
  tensors_.push_back({name, type, shape, row_size(type, shape[0]) * static_cast<uint64_t>(rows), 0});
  tensor_bytes_ += tensors_.back().nbytes;
}

Status GgufWriter::write_raw(const void* p, size_t n) {
  if (n != 0 && std::fwrite(p, 1, n, file_) != n) return Status::IOError(path_ + ": write failed: " + std::strerror(errno));
  written_ += n;
  return Status::Ok();
}

Status GgufWriter::pad_to(uint64_t alignment) {
  static const uint8_t kZeros[64] = {0};
  while (written_ % alignment != 0) {
    const size_t n = std::min<uint64_t>(alignment - written_ % alignment, sizeof(kZeros));
    SWARM_RETURN_IF_ERROR(write_raw(kZeros, n));
  }
  return Status::Ok();
}

namespace {

void put(std::string& out, const void* p, size_t n) { out.append(static_cast<const char*>(p), n); }
template <typename T>
void put_pod(std::string& out, T v) { put(out, &v, sizeof(v)); }
void put_string(std::string& out, const std::string& s) {
  put_pod<uint64_t>(out, s.size());
  out += s;
}

void put_scalar(std::string& out, GgufValueType t, int64_t i, double f) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: put_pod<uint8_t>(out, static_cast<uint8_t>(i)); break;
    case GgufValueType::UINT16: case GgufValueType::INT16: put_pod<uint16_t>(out, static_cast<uint16_t>(i)); break;
    case GgufValueType::UINT32: case GgufValueType::INT32: put_pod<uint32_t>(out, static_cast<uint32_t>(i)); break;
    case GgufValueType::UINT64: case GgufValueType::INT64: put_pod<int64_t>(out, i); break;
    case GgufValueType::FLOAT32: put_pod<float>(out, static_cast<float>(f)); break;
    case GgufValueType::FLOAT64: put_pod<double>(out, f); break;
    default: break;
  }
}

void put_value(std::string& out, const GgufValue& v) {
  if (v.type == GgufValueType::STRING) return put_string(out, v.str);
  if (v.type != GgufValueType::ARRAY) return put_scalar(out, v.type, v.i, v.f);
  put_pod<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
  put_pod<uint64_t>(out, v.array_size());
  for (const std::string& s : v.strings) put_string(out, s);
  for (const GgufValue& a : v.arrays) put_value(out, a);
  for (double f : v.floats) put_scalar(out, v.elem_type, 0, f);
  for (int64_t i : v.ints) put_scalar(out, v.elem_type, i, 0);
}

}  // namespace

Status GgufWriter::begin(const std::string& path) {
  path_ = path;
  // The metadata as it stands now decides the alignment, however often or late
  // it was set; a value readers would refuse is refused here.
  alignment_ = 32;
  for (const auto& [k, v] : kv_) {
    if (k != "general.alignment") continue;
    if (!v.is_integer() || v.i <= 0 || (v.i & (v.i - 1)) != 0)
      return Status::InvalidArgument(path + ": general.alignment must be a positive power of two, got " +
                                     (v.is_integer() ? v.ToString() : std::string("a ") + gguf_value_type_name(v.type)));
    alignment_ = static_cast<uint64_t>(v.i);
  }
  uint64_t offset = 0;
  for (PendingTensor& t : tensors_) {
    t.offset = (offset + alignment_ - 1) / alignment_ * alignment_;
    offset = t.offset + t.nbytes;
  }
  file_ = std::fopen(path.c_str(), "wb");
  if (file_ == nullptr) return Status::IOError(path + ": " + std::strerror(errno));
  std::string h;
  put_pod<uint32_t>(h, 0x46554747);  // "GGUF"
  put_pod<uint32_t>(h, 3);
  put_pod<uint64_t>(h, tensors_.size());
  put_pod<uint64_t>(h, kv_.size());
  for (const auto& [k, v] : kv_) {
    put_string(h, k);
    put_pod<uint32_t>(h, static_cast<uint32_t>(v.type));
    put_value(h, v);
  }
  for (const PendingTensor& t : tensors_) {
    put_string(h, t.name);
    put_pod<uint32_t>(h, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put_pod<uint64_t>(h, static_cast<uint64_t>(d));
    put_pod<uint32_t>(h, static_cast<uint32_t>(t.type));
    put_pod<uint64_t>(h, t.offset);
  }
  SWARM_RETURN_IF_ERROR(write_raw(h.data(), h.size()));
  SWARM_RETURN_IF_ERROR(pad_to(alignment_));
  data_start_ = written_;
  return Status::Ok();
}

Status GgufWriter::write_tensor_data(const void* data, size_t n) {
  if (file_ == nullptr) return Status::Internal("GgufWriter: begin() was not called");
  while (n > 0) {
    if (current_ >= tensors_.size()) return Status::InvalidArgument(path_ + ": more tensor data than declared");
    const PendingTensor& t = tensors_[current_];
    if (current_done_ == 0) {
      SWARM_RETURN_IF_ERROR(pad_to(alignment_));
      if (written_ - data_start_ != t.offset) return Status::Internal(path_ + ": tensor " + t.name + " misplaced");
    }
    const size_t take = static_cast<size_t>(std::min<uint64_t>(n, t.nbytes - current_done_));
    SWARM_RETURN_IF_ERROR(write_raw(data, take));
    data = static_cast<const uint8_t*>(data) + take;
    n -= take;
    current_done_ += take;
    tensor_bytes_written_ += take;
    if (current_done_ == t.nbytes) {
      ++current_;
      current_done_ = 0;
    }
  }
  return Status::Ok();
}

Status GgufWriter::finish() {
  if (file_ == nullptr) return Status::Internal("GgufWriter: begin() was not called");
  if (current_ != tensors_.size())
    return Status::InvalidArgument(path_ + ": tensor " + tensors_[current_].name + " was not written in full");
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) return Status::IOError(path_ + ": close failed: " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace swarm
