#include "engine/model.h"

#include <algorithm>
#include <map>

#include "engine/backend_select.h"
#include "engine/model_arch.h"
#include "engine/model_loader.h"
#include "engine/progress.h"
#include "engine/quants.h"

namespace swarm {

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Load(const std::string& path, const LoadOptions& options) {
  // The device first: a wrong name fails before gigabytes are read.
  auto backend = select_backend(options.device);
  if (!backend.ok()) return backend.status();
  auto src = open_model_source(path);
  if (!src.ok()) return src.status();
  SWARM_RETURN_IF_ERROR(check_model_tensors(*src));
  std::unique_ptr<Model> m(new Model());
  m->source_ = std::move(src).value();
  SWARM_RETURN_IF_ERROR(m->map_and_bind(options));
  m->backend_ = std::move(backend).value();
  const int context = options.context > 0 ? options.context : m->config().n_ctx_train;
  SWARM_RETURN_IF_ERROR(m->backend_->load(m->config(), m->weights_, context));
  return m;
}

Status Model::map_and_bind(const LoadOptions& o) {
  const ModelConfig& c = source_.config;
  first_layer_ = o.first_layer;
  last_layer_ = o.last_layer < 0 ? c.n_layer : o.last_layer;
  if (first_layer_ < 0 || first_layer_ > last_layer_ || last_layer_ > c.n_layer)
    return Status::InvalidArgument(source_.path + ": layer range " + std::to_string(first_layer_) + ":" +
                                   std::to_string(last_layer_) + " is outside the model's " +
                                   std::to_string(c.n_layer) + " layers");
  has_embed_ = o.embed < 0 ? first_layer_ == 0 : o.embed == 1;
  has_head_ = o.head < 0 ? last_layer_ == c.n_layer : o.head == 1;

  // The tensors this model's parts use; only their span of each file is mapped.
  std::vector<std::string> names;
  for (int il = first_layer_; il < last_layer_; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    for (const char* s : {"attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                          "attn_output.weight", "attn_q.bias", "attn_k.bias", "attn_v.bias",
                          "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"})
      names.push_back(p + s);
  }
  if (has_embed_ || (has_head_ && c.tied_embeddings)) names.push_back("token_embd.weight");
  if (has_head_) {
    names.push_back("output_norm.weight");
    names.push_back("output.weight");
  }
  names.push_back("rope_freqs.weight");

  std::map<int, std::pair<uint64_t, uint64_t>> span;  // file -> [begin, end)
  for (const std::string& n : names) {
    const TensorInfo* t = source_.find(n);
    if (t == nullptr) continue;
    auto [it, fresh] = span.try_emplace(t->file_index, t->offset, t->offset + t->nbytes);
    if (!fresh) {
      it->second.first = std::min(it->second.first, t->offset);
      it->second.second = std::max(it->second.second, t->offset + t->nbytes);
    }
  }
  region_of_file_.assign(source_.files.size(), nullptr);
  uint64_t total = 0;
  for (const auto& [file, range] : span) total += range.second - range.first;
  // Reading the weights in is where loading spends its time.
  ProgressBar bar(
      "loading layers " + std::to_string(first_layer_) + ":" + std::to_string(last_layer_), total,
      o.progress ? stderr : nullptr);
  uint64_t before = 0;  // bytes of the regions already read
  for (const auto& [file, range] : span) {
    const uint64_t length = range.second - range.first;
    ProgressCallback on_bytes;
    if (bar.enabled())
      on_bytes = [&](uint64_t done) { bar.update(before + std::min(done, length)); };
    auto r = o.no_mmap
                 ? MappedRegion::Read(source_.files[file], range.first, length, on_bytes)
                 : MappedRegion::MapPopulated(source_.files[file], range.first, length, on_bytes);
    if (!r.ok()) return r.status();
    region_of_file_[file] = r->get();
    regions_.push_back(std::move(r).value());
    before += length;
    bar.update(before);
  }
  bar.finish();

  const int64_t d = c.n_embd, q_dim = int64_t{c.n_head} * c.head_dim, kv = int64_t{c.n_head_kv} * c.head_dim;
  weights_.first_layer = first_layer_;
  weights_.last_layer = last_layer_;
  weights_.layers.resize(last_layer_ - first_layer_);
  for (int il = first_layer_; il < last_layer_; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& L = weights_.layers[il - first_layer_];
    struct { WeightMatrix* w; const char* n; } mats[] = {
        {&L.wq, "attn_q.weight"}, {&L.wk, "attn_k.weight"}, {&L.wv, "attn_v.weight"},
        {&L.wo, "attn_output.weight"}, {&L.gate, "ffn_gate.weight"}, {&L.up, "ffn_up.weight"},
        {&L.down, "ffn_down.weight"}};
    for (auto& m : mats) {
      auto w = matrix(p + m.n);
      if (!w.ok()) return w.status();
      *m.w = *w;
    }
    struct { const float** v; const char* n; int64_t len; } vecs[] = {
        {&L.attn_norm, "attn_norm.weight", d}, {&L.ffn_norm, "ffn_norm.weight", d},
        {&L.bq, "attn_q.bias", q_dim}, {&L.bk, "attn_k.bias", kv}, {&L.bv, "attn_v.bias", kv}};
    for (auto& v : vecs) {
      if (source_.find(p + v.n) == nullptr) continue;  // optional biases; required ones were checked
      auto r = vector(p + v.n, v.len);
      if (!r.ok()) return r.status();
      *v.v = *r;
    }
  }
  if (has_embed_ || (has_head_ && c.tied_embeddings)) {
    auto e = matrix("token_embd.weight");
    if (!e.ok()) return e.status();
    weights_.token_embd = *e;
  }
  if (has_head_) {
    auto norm = vector("output_norm.weight", d);
    if (!norm.ok()) return norm.status();
    weights_.output_norm = *norm;
    auto out = matrix(c.tied_embeddings ? "token_embd.weight" : "output.weight");
    if (!out.ok()) return out.status();
    weights_.output = *out;
  }
  weights_.rope_position_scale =
      c.rope_scaling == RopeScaling::kLinear ? 1.0 / c.rope_scale_factor : 1.0;
  std::vector<double>& inv_freq = weights_.rope_inv_freq;
  inv_freq = rope_inv_freq(c);
  if (source_.find("rope_freqs.weight") != nullptr) {
    auto factors = vector("rope_freqs.weight", c.rope_dim / 2);
    if (!factors.ok()) return factors.status();
    for (int i = 0; i < c.rope_dim / 2; ++i) inv_freq[i] /= (*factors)[i];
  }
  return Status::Ok();
}

Result<WeightMatrix> Model::matrix(const std::string& name) {
  const TensorInfo* t = source_.find(name);
  if (t == nullptr) return Status::NotFound(source_.path + ": tensor " + name + " is missing");
  const MappedRegion* r = region_of_file_[t->file_index];
  WeightMatrix w;
  w.type = t->type;
  w.cols = t->shape[0];
  w.rows = t->n_elements() / t->shape[0];
  w.data = r->data() + (t->offset - r->offset());
  return w;
}

Result<const float*> Model::vector(const std::string& name, int64_t expected_len) {
  const TensorInfo* t = source_.find(name);
  if (t == nullptr) return Status::NotFound(source_.path + ": tensor " + name + " is missing");
  if (t->n_elements() != expected_len)
    return Status::InvalidArgument(source_.path + ": tensor " + name + " has " + std::to_string(t->n_elements()) +
                                   " elements, expected " + std::to_string(expected_len));
  const MappedRegion* r = region_of_file_[t->file_index];
  const uint8_t* data = r->data() + (t->offset - r->offset());
  // Norm weights and biases are small; keeping them as float32 copies lets every
  // kernel take plain floats whatever type the file stored them in.
  auto v = std::make_unique<std::vector<float>>(expected_len);
  if (!dequantize_row(t->type, data, v->data(), expected_len))
    return Status::Unsupported(source_.path + ": tensor " + name + " has unsupported type " + type_name(t->type));
  const float* p = v->data();
  owned_.push_back(std::move(v));
  return p;
}

uint64_t Model::huge_page_bytes() const {
  uint64_t n = 0;
  for (const auto& r : regions_) n += r->huge_mapped_bytes();
  return n;
}

uint64_t Model::mapped_bytes() const {
  uint64_t n = 0;
  for (const auto& r : regions_) n += r->length();
  return n;
}

std::vector<std::span<const uint8_t>> Model::mapped_spans() const {
  std::vector<std::span<const uint8_t>> spans;
  for (const auto& r : regions_) spans.emplace_back(r->data(), static_cast<size_t>(r->length()));
  return spans;
}

uint64_t Model::weight_bytes_per_token() const {
  auto bytes = [](const WeightMatrix& w) { return row_size(w.type, w.cols) * static_cast<uint64_t>(w.rows); };
  uint64_t n = 0;
  for (const LayerWeights& L : weights_.layers)
    for (const WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) n += bytes(*w);
  if (has_head_) n += bytes(weights_.output);
  if (has_embed_) n += row_size(weights_.token_embd.type, weights_.token_embd.cols);
  return n;
}

std::string Model::main_type() const {
  std::map<std::string, uint64_t> by_type;
  for (const LayerWeights& L : weights_.layers)
    for (const WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down})
      by_type[type_name(w->type)] += static_cast<uint64_t>(w->rows * w->cols);
  std::string best = "F32";
  uint64_t most = 0;
  for (const auto& [t, n] : by_type)
    if (n > most) most = n, best = t;
  return best;
}

std::unique_ptr<KvCache> Model::new_cache(int max_len) const {
  return new_cache(first_layer_, last_layer_, max_len);
}

std::unique_ptr<KvCache> Model::new_cache(int first, int last, int max_len) const {
  return std::make_unique<KvCache>(first, last, kv_dim(), max_len,
                                   backend_->new_kv_storage(first, last, kv_dim(), max_len));
}

Status Model::embed(const int32_t* tokens, int64_t n, float* hidden) const {
  if (!has_embed_) return Status::InvalidArgument("this model part was loaded without the embedding");
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= config().n_vocab)
      return Status::InvalidArgument("token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                                     " is outside the vocabulary [0, " + std::to_string(config().n_vocab) + ")");
  return backend_->embed(tokens, n, hidden);
}

Status Model::run_layers(float* hidden, const std::vector<SeqChunk>& chunks, int first, int last,
                         ThreadPool& pool) const {
  if (first < first_layer_ || last > last_layer_ || first > last)
    return Status::InvalidArgument("layers " + std::to_string(first) + ":" + std::to_string(last) +
                                   " are not within the loaded range " + std::to_string(first_layer_) + ":" +
                                   std::to_string(last_layer_));
  if (first == last) return Status::Ok();  // no layers: the caches must not advance
  std::vector<int32_t> positions;
  for (const SeqChunk& ch : chunks) {
    if (ch.cache == nullptr || ch.n_tokens <= 0) return Status::InvalidArgument("empty sequence chunk in batch");
    if (ch.cache->first_layer() > first || ch.cache->last_layer() < last || ch.cache->kv_dim() != kv_dim())
      return Status::InvalidArgument("KV cache does not hold layers " + std::to_string(first) + ":" +
                                     std::to_string(last));
    for (int i = 0; i < ch.n_tokens; ++i) positions.push_back(ch.cache->length() + i);
  }
  for (const SeqChunk& ch : chunks) SWARM_RETURN_IF_ERROR(ch.cache->reserve(ch.n_tokens));
  SWARM_RETURN_IF_ERROR(backend_->run_layers(hidden, chunks, positions, first, last, pool));
  // Every layer wrote the new entries at length()..length()+n; now they count.
  for (const SeqChunk& ch : chunks) ch.cache->commit(ch.n_tokens);
  return Status::Ok();
}

Status Model::head(const float* hidden, int64_t n, float* logits, ThreadPool& pool) const {
  if (!has_head_) return Status::InvalidArgument("this model part was loaded without the output head");
  return backend_->head(hidden, n, logits, pool);
}

Status Model::final_norm(const float* hidden, int64_t n, float* out) const {
  if (!has_head_) return Status::InvalidArgument("this model part was loaded without the output head");
  return backend_->final_norm(hidden, n, out);
}

Result<std::vector<float>> Model::forward(const std::vector<int32_t>& tokens, KvCache& cache,
                                          ThreadPool& pool) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::vector<float> hidden(n * config().n_embd);
  SWARM_RETURN_IF_ERROR(embed(tokens.data(), n, hidden.data()));
  SWARM_RETURN_IF_ERROR(run_layers(hidden.data(), {{&cache, static_cast<int>(n)}}, first_layer_, last_layer_, pool));
  std::vector<float> logits(n * config().n_vocab);
  SWARM_RETURN_IF_ERROR(head(hidden.data(), n, logits.data(), pool));
  return logits;
}

}  // namespace swarm
