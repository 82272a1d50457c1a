#include "engine/gguf_convert.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>

#include "engine/gguf_metadata.h"
#include "engine/gguf_writer.h"
#include "engine/hf_loader.h"
#include "engine/hf_vocab.h"
#include "engine/mapped_file.h"
#include "engine/model_arch.h"
#include "engine/progress.h"
#include "engine/quants.h"

namespace swarm {
namespace {

namespace fs = std::filesystem;

// llama_ftype of each output type.
struct OutType {
  const char* name;
  TensorType matrix;
  uint32_t ftype;
};
constexpr OutType kOutTypes[] = {
    {"F32", TensorType::F32, 0},
    {"F16", TensorType::F16, 1},
    {"BF16", TensorType::BF16, 32},
    {"Q8_0", TensorType::Q8_0, 7},
};

struct PlannedTensor {
  const TensorInfo* src = nullptr;  // null: rope_freqs, computed
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;
  int permute_heads = 0;  // > 0: llama attn_q/attn_k, rows permuted in groups of this many heads
};

// Row r of a permuted llama attn_q/attn_k comes from this HF row. HF keeps the
// two halves of each head's rotated pairs apart (rotate-half); GGUF llama
// interleaves them: row h*hd + 2i + j <- row h*hd + j*hd/2 + i
// (convert_hf_to_gguf.py's LlamaModel.permute).
int64_t permuted_source_row(int64_t r, int64_t rows, int n_head) {
  const int64_t hd = rows / n_head;
  const int64_t h = r / hd, within = r % hd;
  return h * hd + (within % 2) * (hd / 2) + within / 2;
}

// Tensors in the order llama.cpp's loader reads them: embeddings, then layer
// by layer (a node serving a layer range reads one stretch of the file), then
// the head.
std::vector<PlannedTensor> plan_tensors(const ModelSource& src, TensorType matrix_type) {
  const ModelConfig& c = src.config;
  std::vector<PlannedTensor> plan;
  const auto add = [&](const TensorInfo& t) {
    PlannedTensor p;
    p.src = &t;
    p.name = t.name;
    p.shape = t.shape;
    p.type = matrix_type;
    if (t.shape.size() <= 1)
      p.type = TensorType::F32;
    else if (t.shape[0] % type_traits(p.type).block_size != 0)
      p.type = TensorType::F16;
    if (c.arch == "llama") {
      const bool q = t.name.ends_with(".attn_q.weight") || t.name.ends_with(".attn_q.bias");
      const bool k = t.name.ends_with(".attn_k.weight") || t.name.ends_with(".attn_k.bias");
      if (q) p.permute_heads = c.n_head;
      if (k) p.permute_heads = c.n_head_kv;
    }
    plan.push_back(std::move(p));
  };
  const auto add_named = [&](const std::string& name) {
    if (const TensorInfo* t = src.find(name)) add(*t);
  };
  add_named("token_embd.weight");
  if (c.rope_scaling == RopeScaling::kLlama3) {
    PlannedTensor p;
    p.name = "rope_freqs.weight";
    p.type = TensorType::F32;
    p.shape = {c.rope_dim / 2};
    plan.push_back(std::move(p));
  }
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string prefix = "blk." + std::to_string(il) + ".";
    for (const TensorInfo& t : src.tensors)
      if (t.name.starts_with(prefix)) add(t);
  }
  add_named("output_norm.weight");
  add_named("output.weight");
  return plan;
}

// Streams one tensor's converted rows into the writer, a slab of rows at a
// time, converting rows in parallel; `bar` hears the bytes written after each slab.
Status write_tensor(const ModelSource& src, const PlannedTensor& p, GgufWriter& w, ThreadPool& pool,
                    ProgressBar& bar) {
  if (p.src == nullptr) {  // rope_freqs
    const std::vector<float> f = rope_freq_factors(src.config);
    return w.write_tensor_data(f.data(), f.size() * sizeof(float));
  }
  const TensorInfo& t = *p.src;
  const std::string where = src.files[t.file_index] + ": tensor " + t.name;
  Result<std::unique_ptr<MappedRegion>> region =
      MappedRegion::Map(src.files[t.file_index], t.offset, t.nbytes);
  if (!region.ok()) return Status::IOError(where + ": " + region.status().message());
  const uint8_t* data = (*region)->data();
  const int64_t cols = t.shape[0];
  const int64_t rows = t.n_elements() / cols;
  const size_t src_row = row_size(t.type, cols), dst_row = row_size(p.type, cols);

  // A permuted vector (a bias) permutes its elements: one row of them.
  if (p.permute_heads > 0 && rows == 1) {
    std::vector<float> in(cols), out(cols);
    if (!dequantize_row(t.type, data, in.data(), cols))
      return Status::Unsupported(where + ": cannot read its type");
    for (int64_t i = 0; i < cols; ++i) out[i] = in[permuted_source_row(i, cols, p.permute_heads)];
    std::vector<uint8_t> bytes(dst_row);
    quantize_row(p.type, out.data(), bytes.data(), cols);
    return w.write_tensor_data(bytes.data(), bytes.size());
  }

  const int64_t slab =
      std::max<int64_t>(1, (int64_t{16} << 20) / static_cast<int64_t>(std::max(src_row, dst_row)));
  std::vector<uint8_t> out;
  for (int64_t r0 = 0; r0 < rows; r0 += slab) {
    const int64_t nr = std::min(slab, rows - r0);
    out.resize(static_cast<size_t>(nr) * dst_row);
    std::atomic<bool> ok{true};
    pool.parallel_for(nr, [&](int64_t b, int64_t e) {
      std::vector<float> row(cols);
      for (int64_t r = b; r < e; ++r) {
        int64_t from = r0 + r;
        if (p.permute_heads > 0) from = permuted_source_row(from, rows, p.permute_heads);
        if (!dequantize_row(t.type, data + from * src_row, row.data(), cols) ||
            !quantize_row(p.type, row.data(), out.data() + r * dst_row, cols))
          ok = false;
      }
    });
    if (!ok)
      return Status::Unsupported(where + ": cannot convert " + type_traits(t.type).name + " to " +
                                 type_traits(p.type).name);
    SWARM_RETURN_IF_ERROR(w.write_tensor_data(out.data(), out.size()));
    bar.update(w.tensor_bytes_written());
  }
  return Status::Ok();
}

// Removes the temporary file unless the conversion completed.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() {
    if (!kept_) std::remove(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }
  void keep() { kept_ = true; }

 private:
  std::string path_;
  bool kept_ = false;
};

Result<ConvertSummary> convert(const std::string& hf_dir, const std::string& out_path,
                               const ConvertOptions& o, ThreadPool& pool) {
  const OutType* out_type = nullptr;
  for (const OutType& t : kOutTypes)
    if (o.type == t.name) out_type = &t;
  if (out_type == nullptr)
    return Status::InvalidArgument("--type " + o.type + " is not supported (F32, F16, Q8_0)");
  if (out_path.empty()) return Status::InvalidArgument("no output path");

  Result<ModelSource> loaded = load_hf_folder(hf_dir);
  if (!loaded.ok()) return loaded.status();
  const ModelSource& src = *loaded;
  SWARM_RETURN_IF_ERROR(check_model_tensors(src));
  Result<GgufVocab> vocab = read_hf_vocab(hf_dir, src.config.n_vocab);
  if (!vocab.ok()) return vocab.status();

  const std::vector<PlannedTensor> plan = plan_tensors(src, out_type->matrix);
  ConvertSummary summary;
  summary.arch = src.config.arch;
  summary.tokenizer = vocab->model + (vocab->model == "gpt2" ? " (" + vocab->pre + ")" : "");
  summary.n_tensors = static_cast<int>(plan.size());
  if (auto it = src.metadata.find("hf.skipped_tensors"); it != src.metadata.end())
    summary.skipped = it->second;
  for (const PlannedTensor& p : plan) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    summary.n_params += static_cast<uint64_t>(n);
  }

  std::string name = o.name;
  if (name.empty()) name = fs::path(hf_dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(hf_dir).lexically_normal().parent_path().filename().string();

  GgufWriter w;
  write_general_metadata(w, src.config.arch, name, summary.n_params);
  write_hparams(w, src.config);
  write_file_type(w, out_type->ftype);
  write_vocab(w, *vocab);
  for (const PlannedTensor& p : plan) w.add_tensor(p.name, p.type, p.shape);

  TempFile tmp(out_path + ".tmp." + std::to_string(::getpid()));
  SWARM_RETURN_IF_ERROR(w.begin(tmp.path()));
  ProgressBar bar("converting to " + o.type, w.tensor_bytes(), o.progress ? stderr : nullptr);
  for (const PlannedTensor& p : plan) {
    SWARM_RETURN_IF_ERROR(write_tensor(src, p, w, pool, bar));
    bar.update(w.tensor_bytes_written());
  }
  bar.finish();
  SWARM_RETURN_IF_ERROR(w.finish());
  std::error_code ec;
  fs::rename(tmp.path(), out_path, ec);
  if (ec)
    return Status::IOError(out_path + ": cannot rename " + tmp.path() +
                           " into place: " + ec.message());
  tmp.keep();
  summary.file_bytes = fs::file_size(out_path, ec);
  return summary;
}

}  // namespace

Result<ConvertSummary> convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path,
                                          const ConvertOptions& options, ThreadPool& pool) {
  // Exceptions (std::filesystem, bad_alloc) stop here: the temporary file is
  // removed on the way out.
  try {
    return convert(hf_dir, out_path, options, pool);
  } catch (const std::exception& e) {
    return Status::IOError(out_path + ": " + e.what());
  }
}

}  // namespace swarm
