#include "engine/gguf.h"

#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_set>

#include "engine/mapped_file.h"

namespace swarm {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian uint32
constexpr uint32_t kMaxDims = 4;              // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 4;             // nested arrays: deeper is surely garbage

// Bounds-checked little-endian cursor over the mapped header. Every read names
// what it was reading, so an error says where the file went wrong.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  Status read(void* dst, uint64_t n, const std::string& what) {
    if (n > remaining())
      return Status::Corruption(path_ + ": truncated while reading " + what + " at byte " +
                                std::to_string(pos_) + " (needs " + std::to_string(n) +
                                " bytes, " + std::to_string(remaining()) + " left)");
    std::memcpy(dst, data_ + pos_, n);
    pos_ += n;
    return Status::Ok();
  }
  template <typename T>
  Status read_pod(T* v, const std::string& what) {
    return read(v, sizeof(T), what);
  }
  Status read_string(std::string* s, const std::string& what) {
    uint64_t len = 0;
    SWARM_RETURN_IF_ERROR(read_pod(&len, what + " length"));
    if (len > remaining())
      return Status::Corruption(path_ + ": " + what + " claims " + std::to_string(len) +
                                " bytes but only " + std::to_string(remaining()) + " remain");
    s->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return Status::Ok();
  }
  Status error(const std::string& what) const { return Status::Corruption(path_ + ": " + what); }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    default: return 0;
  }
}

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::FLOAT64); }

Status read_scalar(Cursor& c, GgufValueType t, GgufValue* v, const std::string& what) {
  uint8_t raw[8] = {0};
  SWARM_RETURN_IF_ERROR(c.read(raw, scalar_size(t), what));
  switch (t) {
    case GgufValueType::UINT8: { uint8_t x; std::memcpy(&x, raw, 1); v->i = x; break; }
    case GgufValueType::INT8: { int8_t x; std::memcpy(&x, raw, 1); v->i = x; break; }
    case GgufValueType::BOOL: {
      if (raw[0] > 1) return c.error(what + ": bool value " + std::to_string(raw[0]) + " is neither 0 nor 1");
      v->i = raw[0];
      break;
    }
    case GgufValueType::UINT16: { uint16_t x; std::memcpy(&x, raw, 2); v->i = x; break; }
    case GgufValueType::INT16: { int16_t x; std::memcpy(&x, raw, 2); v->i = x; break; }
    case GgufValueType::UINT32: { uint32_t x; std::memcpy(&x, raw, 4); v->i = x; break; }
    case GgufValueType::INT32: { int32_t x; std::memcpy(&x, raw, 4); v->i = x; break; }
    case GgufValueType::UINT64: case GgufValueType::INT64: std::memcpy(&v->i, raw, 8); break;
    case GgufValueType::FLOAT32: { float x; std::memcpy(&x, raw, 4); v->f = x; break; }
    case GgufValueType::FLOAT64: std::memcpy(&v->f, raw, 8); break;
    default: return c.error(what + ": not a scalar type");
  }
  return Status::Ok();
}

Status read_value(Cursor& c, GgufValueType t, GgufValue* v, const std::string& what, int depth) {
  v->type = t;
  if (t == GgufValueType::STRING) return c.read_string(&v->str, what);
  if (t != GgufValueType::ARRAY) return read_scalar(c, t, v, what);

  if (depth >= kMaxArrayDepth) return c.error(what + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
  uint32_t et = 0;
  uint64_t n = 0;
  SWARM_RETURN_IF_ERROR(c.read_pod(&et, what + " element type"));
  if (!valid_value_type(et)) return c.error(what + ": unknown array element type " + std::to_string(et));
  SWARM_RETURN_IF_ERROR(c.read_pod(&n, what + " element count"));
  v->elem_type = static_cast<GgufValueType>(et);
  // Every element takes at least one byte (a string at least its 8-byte length):
  // a count the rest of the file cannot hold is rejected before allocating.
  const uint64_t min_elem = v->elem_type == GgufValueType::STRING  ? 8
                            : v->elem_type == GgufValueType::ARRAY ? 12
                                                                   : scalar_size(v->elem_type);
  if (n > c.remaining() / min_elem)
    return c.error(what + ": array of " + std::to_string(n) + " elements does not fit in the file");
  GgufValue elem;
  switch (v->elem_type) {
    case GgufValueType::STRING:
      v->strings.resize(n);
      for (uint64_t k = 0; k < n; ++k) SWARM_RETURN_IF_ERROR(c.read_string(&v->strings[k], what));
      break;
    case GgufValueType::ARRAY:
      v->arrays.resize(n);
      for (uint64_t k = 0; k < n; ++k)
        SWARM_RETURN_IF_ERROR(read_value(c, GgufValueType::ARRAY, &v->arrays[k], what, depth + 1));
      break;
    case GgufValueType::FLOAT32: case GgufValueType::FLOAT64:
      v->floats.resize(n);
      for (uint64_t k = 0; k < n; ++k) {
        SWARM_RETURN_IF_ERROR(read_scalar(c, v->elem_type, &elem, what));
        v->floats[k] = elem.f;
      }
      break;
    default:
      v->ints.resize(n);
      for (uint64_t k = 0; k < n; ++k) {
        SWARM_RETURN_IF_ERROR(read_scalar(c, v->elem_type, &elem, what));
        v->ints[k] = elem.i;
      }
  }
  return Status::Ok();
}

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
  static const char* kNames[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32", "float32",
                                 "bool",  "string", "array",  "uint64", "int64",  "float64"};
  const uint32_t i = static_cast<uint32_t>(t);
  return i < sizeof(kNames) / sizeof(kNames[0]) ? kNames[i] : "unknown";
}

bool GgufValue::is_integer() const {
  return type != GgufValueType::FLOAT32 && type != GgufValueType::FLOAT64 &&
         type != GgufValueType::STRING && type != GgufValueType::ARRAY;
}

size_t GgufValue::array_size() const {
  return ints.size() + floats.size() + strings.size() + arrays.size();
}

std::string GgufValue::ToString() const {
  if (type == GgufValueType::STRING) return str;
  if (is_float()) return std::to_string(f);
  if (type == GgufValueType::BOOL) return i ? "true" : "false";
  if (type == GgufValueType::UINT64) return std::to_string(static_cast<uint64_t>(i));
  if (type != GgufValueType::ARRAY) return std::to_string(i);
  return std::string("[") + gguf_value_type_name(elem_type) + " x " + std::to_string(array_size()) + "]";
}

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : kv)
    if (k == key) return &v;
  return nullptr;
}

Result<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return Status::NotFound(path + ": metadata key " + key + " is missing");
  if (!v->is_integer())
    return Status::InvalidArgument(path + ": metadata key " + key + " is a " +
                                   gguf_value_type_name(v->type) + ", expected an integer");
  return v->i;
}

Result<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return Status::NotFound(path + ": metadata key " + key + " is missing");
  if (v->is_float()) return v->f;
  if (v->is_integer()) return static_cast<double>(v->i);
  return Status::InvalidArgument(path + ": metadata key " + key + " is a " +
                                 gguf_value_type_name(v->type) + ", expected a number");
}

Result<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return Status::NotFound(path + ": metadata key " + key + " is missing");
  if (v->type != GgufValueType::STRING)
    return Status::InvalidArgument(path + ": metadata key " + key + " is a " +
                                   gguf_value_type_name(v->type) + ", expected a string");
  return v->str;
}

Result<GgufFile> read_gguf(const std::string& path) {
  auto size = file_size(path);
  if (!size.ok()) return size.status();
  // The header is read through a mapping of the whole file; only the pages it
  // touches are ever loaded, and the mapping is dropped on return.
  auto region = MappedRegion::Map(path, 0, *size);
  if (!region.ok()) return region.status();
  Cursor c(path, (*region)->data(), *size);

  GgufFile f;
  f.path = path;
  f.file_size = *size;
  uint32_t magic = 0;
  SWARM_RETURN_IF_ERROR(c.read_pod(&magic, "magic"));
  if (magic != kGgufMagic) return c.error("not a GGUF file (bad magic)");
  SWARM_RETURN_IF_ERROR(c.read_pod(&f.version, "version"));
  if (f.version != 2 && f.version != 3)
    return Status::Unsupported(path + ": GGUF version " + std::to_string(f.version) +
                               " (supported: 2 and 3)");
  uint64_t n_tensors = 0, n_kv = 0;
  SWARM_RETURN_IF_ERROR(c.read_pod(&n_tensors, "tensor count"));
  SWARM_RETURN_IF_ERROR(c.read_pod(&n_kv, "metadata count"));
  if (n_kv > c.remaining() / 12) return c.error("metadata count " + std::to_string(n_kv) + " does not fit in the file");
  if (n_tensors > c.remaining() / 24)
    return c.error("tensor count " + std::to_string(n_tensors) + " does not fit in the file");

  f.kv.reserve(n_kv);
  std::unordered_set<std::string> keys;
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    SWARM_RETURN_IF_ERROR(c.read_string(&key, "metadata key #" + std::to_string(k)));
    // A repeated key would make the file mean different things to different
    // readers (llama.cpp refuses it too).
    if (!keys.insert(key).second) return c.error("metadata key " + key + " appears twice");
    uint32_t t = 0;
    SWARM_RETURN_IF_ERROR(c.read_pod(&t, "type of metadata " + key));
    if (!valid_value_type(t)) return c.error("metadata " + key + " has unknown value type " + std::to_string(t));
    GgufValue v;
    SWARM_RETURN_IF_ERROR(read_value(c, static_cast<GgufValueType>(t), &v, "metadata " + key, 0));
    f.kv.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    if (!a->is_integer() || a->i <= 0 || (a->i & (a->i - 1)) != 0)
      return c.error("general.alignment must be a positive power of two");
    f.alignment = static_cast<uint64_t>(a->i);
  }

  f.tensors.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    SWARM_RETURN_IF_ERROR(c.read_string(&t.name, "name of tensor #" + std::to_string(k)));
    const std::string what = "tensor " + t.name;
    uint32_t n_dims = 0;
    SWARM_RETURN_IF_ERROR(c.read_pod(&n_dims, what + " dimension count"));
    if (n_dims == 0 || n_dims > kMaxDims)
      return c.error(what + ": " + std::to_string(n_dims) + " dimensions (allowed 1 to 4)");
    t.shape.resize(n_dims);
    int64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      SWARM_RETURN_IF_ERROR(c.read_pod(&dim, what + " dimension"));
      if (dim == 0 || dim > (1ull << 40) || static_cast<uint64_t>(n_elem) > (1ull << 50) / dim)
        return c.error(what + ": dimension " + std::to_string(d) + " = " + std::to_string(dim) + " is out of range");
      t.shape[d] = static_cast<int64_t>(dim);
      n_elem *= static_cast<int64_t>(dim);
    }
    uint32_t type = 0;
    SWARM_RETURN_IF_ERROR(c.read_pod(&type, what + " type"));
    if (!is_known_type(type))
      return Status::Unsupported(path + ": " + what + " has unknown tensor type " + std::to_string(type));
    t.type = static_cast<TensorType>(type);
    const TypeTraits& tr = type_traits(t.type);
    if (t.shape[0] % tr.block_size != 0)
      return c.error(what + ": row length " + std::to_string(t.shape[0]) + " is not a multiple of " +
                     tr.name + "'s block size " + std::to_string(tr.block_size));
    SWARM_RETURN_IF_ERROR(c.read_pod(&t.offset, what + " offset"));
    if (t.offset % f.alignment != 0)
      return c.error(what + ": data offset " + std::to_string(t.offset) + " is not aligned to " +
                     std::to_string(f.alignment));
    t.nbytes = row_size(t.type, t.shape[0]) * static_cast<uint64_t>(n_elem / t.shape[0]);
    f.tensors.push_back(std::move(t));
  }
  f.data_offset = (c.pos() + f.alignment - 1) / f.alignment * f.alignment;
  for (TensorInfo& t : f.tensors) {
    const uint64_t data_bytes = f.file_size >= f.data_offset ? f.file_size - f.data_offset : 0;
    if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset)
      return c.error("tensor " + t.name + ": data [" + std::to_string(f.data_offset + t.offset) + ", " +
                     std::to_string(f.data_offset + t.offset + t.nbytes) + ") extends past the end of the file (" +
                     std::to_string(f.file_size) + " bytes); the file is truncated");
    t.offset += f.data_offset;
  }
  // Hashed, not pairwise: a hostile table of a million tensors must not take minutes.
  std::unordered_set<std::string_view> names;
  for (const TensorInfo& t : f.tensors)
    if (!names.insert(t.name).second) return c.error("tensor " + t.name + " appears twice");
  return f;
}

namespace {

Status require_int(const GgufFile& f, const std::string& key, int* out, int64_t lo = 1,
                   int64_t hi = std::numeric_limits<int32_t>::max()) {
  auto v = f.get_int(key);
  if (!v.ok()) return v.status();
  if (*v < lo || *v > hi)
    return Status::InvalidArgument(f.path + ": metadata " + key + " = " + std::to_string(*v) +
                                   " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  *out = static_cast<int>(*v);
  return Status::Ok();
}

}  // namespace

Result<ModelSource> load_gguf_model(const std::string& path) {
  auto file = read_gguf(path);
  if (!file.ok()) return file.status();
  const GgufFile& f = *file;
  ModelSource src;
  src.path = path;
  src.format = "gguf";
  src.files = {path};
  src.tensors = f.tensors;
  for (const auto& [k, v] : f.kv)
    if (v.type != GgufValueType::ARRAY) src.metadata[k] = v.ToString();

  auto arch = f.get_string("general.architecture");
  if (!arch.ok()) return arch.status();
  ModelConfig& c = src.config;
  c.arch = *arch;
  if (c.arch != "llama" && c.arch != "qwen2")
    return Status::Unsupported(path + ": architecture '" + c.arch + "' (supported: llama, qwen2)");
  const std::string a = c.arch + ".";
  if (auto name = f.get_string("general.name"); name.ok()) c.name = *name;
  SWARM_RETURN_IF_ERROR(require_int(f, a + "block_count", &c.n_layer, 1, 4096));
  SWARM_RETURN_IF_ERROR(require_int(f, a + "embedding_length", &c.n_embd, 1, 1 << 20));
  SWARM_RETURN_IF_ERROR(require_int(f, a + "feed_forward_length", &c.n_ff, 1, 1 << 22));
  SWARM_RETURN_IF_ERROR(require_int(f, a + "attention.head_count", &c.n_head, 1, 4096));
  c.n_head_kv = c.n_head;
  if (f.find(a + "attention.head_count_kv"))
    SWARM_RETURN_IF_ERROR(require_int(f, a + "attention.head_count_kv", &c.n_head_kv, 1, c.n_head));
  if (c.n_head % c.n_head_kv != 0)
    return Status::InvalidArgument(path + ": head_count " + std::to_string(c.n_head) +
                                   " is not a multiple of head_count_kv " + std::to_string(c.n_head_kv));
  c.head_dim = c.n_embd / c.n_head;
  if (f.find(a + "attention.key_length"))
    SWARM_RETURN_IF_ERROR(require_int(f, a + "attention.key_length", &c.head_dim, 1, 1 << 16));
  if (c.head_dim % 2 != 0) return Status::InvalidArgument(path + ": head dimension must be even");
  c.n_ctx_train = 4096;
  if (f.find(a + "context_length")) SWARM_RETURN_IF_ERROR(require_int(f, a + "context_length", &c.n_ctx_train));
  if (auto eps = f.get_float(a + "attention.layer_norm_rms_epsilon"); eps.ok()) {
    if (!(*eps > 0 && *eps < 1))
      return Status::InvalidArgument(path + ": metadata " + a + "attention.layer_norm_rms_epsilon = " +
                                     std::to_string(*eps) + " is outside (0, 1)");
    c.rms_eps = static_cast<float>(*eps);
  }
  if (auto theta = f.get_float(a + "rope.freq_base"); theta.ok()) {
    if (!(*theta > 0 && *theta < 1e12))
      return Status::InvalidArgument(path + ": metadata " + a + "rope.freq_base = " + std::to_string(*theta) +
                                     " is outside (0, 1e12)");
    c.rope_theta = static_cast<float>(*theta);
  }
  c.rope_dim = c.head_dim;
  if (f.find(a + "rope.dimension_count"))
    SWARM_RETURN_IF_ERROR(require_int(f, a + "rope.dimension_count", &c.rope_dim, 2, c.head_dim));
  // llama.cpp's converter permutes llama's q/k rows to adjacent-pair RoPE; qwen2
  // keeps the Hugging Face (rotate-half) layout.
  c.rope_neox = c.arch == "qwen2";
  if (auto st = f.get_string(a + "rope.scaling.type"); st.ok() && *st == "linear") {
    c.rope_scaling = RopeScaling::kLinear;
    if (auto fac = f.get_float(a + "rope.scaling.factor"); fac.ok() && *fac > 0)
      c.rope_scale_factor = static_cast<float>(*fac);
  }
  // Llama 3.1+ files store the llama3 scaling as per-dimension factors.
  if (src.find("rope_freqs.weight")) c.rope_scaling = RopeScaling::kLlama3;

  const TensorInfo* embd = src.find("token_embd.weight");
  if (embd == nullptr) return Status::NotFound(path + ": tensor token_embd.weight is missing");
  if (embd->shape.size() != 2)
    return Status::InvalidArgument(path + ": tensor token_embd.weight must have 2 dimensions");
  c.n_vocab = static_cast<int>(embd->shape[1]);
  if (auto vs = f.get_int(a + "vocab_size"); vs.ok() && *vs != c.n_vocab)
    return Status::InvalidArgument(path + ": " + a + "vocab_size " + std::to_string(*vs) +
                                   " disagrees with token_embd.weight's " + std::to_string(c.n_vocab) + " rows");
  c.tied_embeddings = src.find("output.weight") == nullptr;
  return src;
}

}  // namespace swarm
