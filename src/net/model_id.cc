#include "net/model_id.h"

#include <sodium.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "engine/gguf.h"
#include "engine/mapped_file.h"
#include "engine/progress.h"
#include "engine/safetensors.h"
#include "net/model_id_cache.h"

namespace swarm::net {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// Frames `n` bytes of `path` from offset 0 by kind and length, and hashes them.
Status hash_file_prefix(Blake2b256& h, const std::string& kind, const std::string& path,
                        uint64_t n) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return Status::IOError(path + ": " + std::strerror(errno));
  h.str(kind);
  h.u64(n);
  std::vector<unsigned char> buf(1 << 16);
  uint64_t left = n;
  while (left > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    const size_t got = std::fread(buf.data(), 1, want, f.get());
    if (got != want) return Status::IOError(path + ": short read while hashing its header");
    h.update(buf.data(), got);
    left -= got;
  }
  return Status::Ok();
}

Status sodium_ready() {
  return sodium_init() < 0 ? Status::Internal("libsodium failed to initialise") : Status::Ok();
}

// The tensors in leaf order (by name, bytewise); an error for a repeated name.
Result<std::vector<const TensorInfo*>> tensors_in_leaf_order(const ModelSource& source) {
  std::vector<const TensorInfo*> order;
  for (const TensorInfo& t : source.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->name < b->name; });
  for (size_t i = 1; i < order.size(); ++i)
    if (order[i]->name == order[i - 1]->name)
      return Status::Corruption(source.path + ": tensor '" + order[i]->name + "' appears twice");
  return order;
}

Digest root_of(const Digest& layout, const std::vector<TensorLeaf>& tensors) {
  std::vector<Digest> leaves;
  leaves.reserve(tensors.size() + 1);
  leaves.push_back(header_leaf(layout));
  for (const TensorLeaf& t : tensors) leaves.push_back(t.hash);
  return sized_root(merkle_root(leaves), leaves.size());
}

// A cache entry is used only if it describes this model: its layout id is the
// one just computed, its tensors are the model's in leaf order, and its leaves
// reproduce its root.
bool entry_fits(const CacheEntry& e, const Digest& layout,
                const std::vector<const TensorInfo*>& order) {
  if (e.ids.layout_id != digest_hex(layout) || e.tensors.size() != order.size()) return false;
  for (size_t i = 0; i < order.size(); ++i)
    if (e.tensors[i].name != order[i]->name) return false;
  return digest_hex(root_of(layout, e.tensors)) == e.ids.model_id;
}

// Hashes every tensor's leaf with `threads` threads, biggest tensors first, and
// draws the progress bar from the calling thread.
Result<std::vector<TensorLeaf>> hash_tensors(const ModelSource& source,
                                             const std::vector<const TensorInfo*>& order,
                                             const ModelIdOptions& options,
                                             uint64_t* bytes_hashed) {
  // One mapping per file, spanning its tensors.
  std::vector<std::unique_ptr<MappedRegion>> regions(source.files.size());
  for (size_t f = 0; f < source.files.size(); ++f) {
    uint64_t begin = UINT64_MAX, end = 0;
    for (const TensorInfo* t : order)
      if (t->file_index == static_cast<int>(f)) {
        begin = std::min(begin, t->offset);
        end = std::max(end, t->offset + t->nbytes);
      }
    if (end == 0) continue;
    auto region = MappedRegion::Map(source.files[f], begin, end - begin);
    if (!region.ok()) return region.status();
    regions[f] = std::move(region).value();
  }
  uint64_t total = 0;
  for (const TensorInfo* t : order) {
    if (t->file_index < 0 || static_cast<size_t>(t->file_index) >= regions.size() ||
        !regions[t->file_index])
      return Status::Corruption(source.path + ": tensor '" + t->name + "' names no file");
    total += t->nbytes;
  }
  std::vector<size_t> schedule(order.size());
  for (size_t i = 0; i < schedule.size(); ++i) schedule[i] = i;
  std::stable_sort(schedule.begin(), schedule.end(),
                   [&](size_t a, size_t b) { return order[a]->nbytes > order[b]->nbytes; });

  std::vector<TensorLeaf> leaves(order.size());
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> done{0};
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;
  auto work = [&] {
    constexpr uint64_t kChunk = 4ull << 20;
    for (size_t k; (k = next.fetch_add(1)) < schedule.size();) {
      const size_t i = schedule[k];
      const TensorInfo& t = *order[i];
      const MappedRegion& r = *regions[t.file_index];
      const uint8_t* p = r.data() + (t.offset - r.offset());
      TensorLeafHasher h(t.name, type_name(t.type), t.shape, t.nbytes);
      for (uint64_t at = 0; at < t.nbytes; at += kChunk) {
        const uint64_t n = std::min(kChunk, t.nbytes - at);
        h.update(p + at, static_cast<size_t>(n));
        done.fetch_add(n, std::memory_order_relaxed);
      }
      leaves[i] = {t.name, h.final()};
    }
    std::lock_guard<std::mutex> lock(mu);
    --running;
    cv.notify_all();
  };
  int n_threads = options.threads > 0
                      ? options.threads
                      : std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 8);
  n_threads = std::max(1, std::min<int>(n_threads, static_cast<int>(order.size())));
  std::vector<std::thread> threads;
  running = n_threads;
  for (int i = 0; i < n_threads; ++i) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {  // out of threads: hash with those there are
      std::lock_guard<std::mutex> lock(mu);
      running -= n_threads - i;
      break;
    }
  }
  if (threads.empty()) {
    running = 1;
    work();
  }
  {
    ProgressBar bar("hashing model weights", total, options.progress ? stderr : nullptr);
    std::unique_lock<std::mutex> lock(mu);
    while (!cv.wait_for(lock, std::chrono::milliseconds(100), [&] { return running == 0; }))
      bar.update(done.load(std::memory_order_relaxed));
    bar.update(done.load());
    bar.finish();
  }
  for (std::thread& t : threads) t.join();
  *bytes_hashed = done.load();
  return leaves;
}

// Writes the cache beside the model, else in the user's cache folder; logs once
// per process when neither can be written.
std::string store(const ModelSource& source, const std::vector<FileStamp>& stamps,
                  const ModelIdentity& identity) {
  const std::string beside = cache_path_beside(source);
  Status st = write_model_id_cache(beside, stamps, identity, /*make_folder=*/false);
  if (st.ok()) return beside;
  const std::string fallback = cache_path_fallback(source);
  Status st2 = fallback.empty()
                   ? Status::NotFound("neither XDG_CACHE_HOME nor HOME is set")
                   : write_model_id_cache(fallback, stamps, identity, /*make_folder=*/true);
  if (st2.ok()) return fallback;
  static std::once_flag logged;
  std::call_once(logged, [&] {
    spdlog::info(
        "model id: no cache file can be written ({}; {}): the weights are hashed at every start",
        st.message(), st2.message());
  });
  return "";
}

std::string describe_mb(uint64_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return s;
}

}  // namespace

std::vector<Digest> leaves_of(const ModelIdentity& identity) {
  std::vector<Digest> leaves;
  leaves.reserve(identity.tensors.size() + 1);
  leaves.push_back(header_leaf(identity.layout));
  for (const TensorLeaf& t : identity.tensors) leaves.push_back(t.hash);
  return leaves;
}

Result<Digest> layout_digest(const ModelSource& source) {
  SWARM_RETURN_IF_ERROR(sodium_ready());
  Blake2b256 h;
  h.str("swarm.model-id.v1");
  h.str(source.format);
  if (source.format == "gguf") {
    const std::string& path = source.files.empty() ? source.path : source.files[0];
    auto gguf = read_gguf(path);
    if (!gguf.ok()) return gguf.status();
    SWARM_RETURN_IF_ERROR(hash_file_prefix(h, "gguf-header", path, gguf->data_offset));
  } else if (source.format == "hf") {
    const std::string config = source.path + "/config.json";
    auto size = file_size(config);
    if (!size.ok()) return size.status();
    SWARM_RETURN_IF_ERROR(hash_file_prefix(h, "config.json", config, *size));
    for (const std::string& file : source.files) {
      auto header = read_safetensors_header(file);
      if (!header.ok()) return header.status();
      SWARM_RETURN_IF_ERROR(hash_file_prefix(h, "safetensors-header", file, header->data_start));
    }
  } else {
    return Status::Unsupported("model format '" + source.format + "' has no content id");
  }
  return h.final();
}

Result<ModelIdentity> compute_model_identity(const ModelSource& source,
                                             const ModelIdOptions& options) {
  auto layout = layout_digest(source);
  if (!layout.ok()) return layout.status();
  auto order = tensors_in_leaf_order(source);
  if (!order.ok()) return order.status();
  ModelIdentity id;
  id.layout = *layout;
  id.ids.layout_id = digest_hex(*layout);

  std::vector<FileStamp> stamps;
  if (options.use_cache) {
    auto s = stamp_model_files(source);
    if (!s.ok()) return s.status();
    stamps = std::move(s).value();
    for (const std::string& path : {cache_path_beside(source), cache_path_fallback(source)}) {
      if (path.empty()) continue;
      auto entry = read_model_id_cache(path, stamps);
      if (!entry || !entry_fits(*entry, *layout, *order)) continue;
      id.ids.model_id = entry->ids.model_id;
      id.tensors = std::move(entry->tensors);
      id.from_cache = true;
      id.cache_path = path;
      return id;
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  auto leaves = hash_tensors(source, *order, options, &id.bytes_hashed);
  if (!leaves.ok()) return leaves.status();
  id.tensors = std::move(leaves).value();
  id.ids.model_id = digest_hex(root_of(*layout, id.tensors));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (options.use_cache) {
    // A file that changed while it was hashed is not cached under its old stamp.
    auto after = stamp_model_files(source);
    if (after.ok() && *after == stamps) id.cache_path = store(source, stamps, id);
  }
  spdlog::info("model id {} (layout {}): hashed {} of weights in {:.2f} s ({:.0f} MB/s){}",
               id.ids.model_id.substr(0, 16), id.ids.layout_id.substr(0, 16),
               describe_mb(id.bytes_hashed), seconds,
               seconds > 0 ? static_cast<double>(id.bytes_hashed) / 1e6 / seconds : 0.0,
               id.cache_path.empty() ? "" : ", cached in " + id.cache_path);
  return id;
}

Result<ModelIds> model_ids(const ModelSource& source) {
  static std::mutex mu;
  static std::map<std::string, ModelIds>* memo = new std::map<std::string, ModelIds>();
  auto stamps = stamp_model_files(source);
  if (!stamps.ok()) return stamps.status();
  std::string key = source.format;
  for (const FileStamp& s : *stamps)
    key += "\n" + s.path + "\n" + std::to_string(s.size) + " " + std::to_string(s.mtime_ns) + " " +
           std::to_string(s.inode);
  std::lock_guard<std::mutex> lock(mu);  // one hashing at a time: it uses every core
  if (auto it = memo->find(key); it != memo->end()) return it->second;
  auto id = compute_model_identity(source);
  if (!id.ok()) return id.status();
  memo->emplace(key, id->ids);
  return id->ids;
}

Result<std::string> model_content_id(const ModelSource& source) {
  auto ids = model_ids(source);
  if (!ids.ok()) return ids.status();
  return ids->model_id;
}

std::string model_mismatch_reason(const std::string& our_layout_id,
                                  const std::string& their_layout_id) {
  if (!our_layout_id.empty() && our_layout_id == their_layout_id)
    return "same architecture and layout, other weights (a fine-tune or a modified file)";
  return "another model";
}

bool tensor_serves_layers(const std::string& name, int first, int last, int n_layer, bool tied) {
  if (name.starts_with("blk.")) {
    int layer = 0;
    size_t i = 4;
    if (i >= name.size() || name[i] < '0' || name[i] > '9') return false;
    for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
      layer = layer * 10 + (name[i] - '0');
      if (layer > (1 << 24)) return false;
    }
    if (i >= name.size() || name[i] != '.') return false;
    return layer >= first && layer < last;
  }
  const bool has_head = last == n_layer;
  if (name.starts_with("token_embd.")) return first == 0 || (has_head && tied);
  if (name.starts_with("output_norm.") || name.starts_with("output.")) return has_head;
  return true;
}

Result<LayerProof> prove_layers(const ModelIdentity& identity, const ModelConfig& config, int first,
                                int last) {
  if (first < 0 || last > config.n_layer || first >= last)
    return Status::InvalidArgument(
        "layers " + std::to_string(first) + ":" + std::to_string(last) +
        " are not within the model's 0:" + std::to_string(config.n_layer));
  const std::vector<Digest> leaves = leaves_of(identity);
  const std::vector<std::vector<Digest>> levels = merkle_levels(leaves);
  LayerProof p;
  p.model_id = identity.ids.model_id;
  p.layout_id = identity.ids.layout_id;
  p.n_leaves = leaves.size();
  p.n_layer = config.n_layer;
  p.first_layer = first;
  p.last_layer = last;
  p.header_path = merkle_path(levels, 0);
  for (size_t i = 0; i < identity.tensors.size(); ++i) {
    const TensorLeaf& t = identity.tensors[i];
    if (!tensor_serves_layers(t.name, first, last, config.n_layer, config.tied_embeddings))
      continue;
    p.tensors.push_back({i + 1, t.name, t.hash, merkle_path(levels, i + 1)});
  }
  return p;
}

Status verify_layer_proof(const LayerProof& p, const std::string& model_id) {
  Digest root{}, layout{};
  if (!digest_from_hex(model_id, &root))
    return Status::InvalidArgument("model id '" + model_id.substr(0, 80) +
                                   "' is not 64 hex digits");
  if (p.model_id != model_id)
    return Status::Corruption("the proof is for model " + p.model_id.substr(0, 16) + ", not " +
                              model_id.substr(0, 16));
  if (!digest_from_hex(p.layout_id, &layout))
    return Status::Corruption("the proof's layout id is not 64 hex digits");
  if (p.n_leaves < 1) return Status::Corruption("the proof's tree has no leaves");
  if (p.first_layer < 0 || p.first_layer >= p.last_layer || p.last_layer > p.n_layer)
    return Status::Corruption("the proof's layers " + std::to_string(p.first_layer) + ":" +
                              std::to_string(p.last_layer) +
                              " are not within 0:" + std::to_string(p.n_layer));
  auto header_root = merkle_root_from_path(header_leaf(layout), 0, p.n_leaves, p.header_path);
  if (!header_root.ok())
    return Status::Corruption("header leaf: " + header_root.status().message());
  if (sized_root(*header_root, p.n_leaves) != root)
    return Status::Corruption("header leaf: its path does not lead to the model id");
  const LayerProofLeaf* prev = nullptr;
  for (const LayerProofLeaf& t : p.tensors) {
    const std::string what =
        "tensor '" + t.name.substr(0, 80) + "' (leaf " + std::to_string(t.index) + ")";
    if (t.index == 0) return Status::Corruption(what + ": leaf 0 is the header's");
    if (prev != nullptr && (t.index <= prev->index || t.name <= prev->name))
      return Status::Corruption(what + ": leaves are not in increasing index and name order");
    // A node may hold more than it proves, never less: the tensors proven must be its range's.
    if (!tensor_serves_layers(t.name, p.first_layer, p.last_layer, p.n_layer, true))
      return Status::Corruption(what + ": not a tensor of layers " + std::to_string(p.first_layer) +
                                ":" + std::to_string(p.last_layer));
    auto r = merkle_root_from_path(t.hash, t.index, p.n_leaves, t.path);
    if (!r.ok()) return Status::Corruption(what + ": " + r.status().message());
    if (sized_root(*r, p.n_leaves) != root)
      return Status::Corruption(what + ": its hash and path do not lead to the model id");
    prev = &t;
  }
  return Status::Ok();
}

namespace {

using nlohmann::json;

// Hostile proofs are bounded: a model has far fewer tensors, a tree of 2^64
// leaves needs at most 64 siblings.
constexpr size_t kMaxProofBytes = 64ull << 20;
constexpr size_t kMaxProofTensors = 1 << 20;
constexpr size_t kMaxPath = 64;

json hex_list(const std::vector<Digest>& ds) {
  json a = json::array();
  for (const Digest& d : ds) a.push_back(digest_hex(d));
  return a;
}

Result<std::vector<Digest>> parse_hex_list(const json& a, const std::string& what) {
  if (!a.is_array() || a.size() > kMaxPath)
    return Status::Corruption(what + ": not an array of at most " + std::to_string(kMaxPath) +
                              " hashes");
  std::vector<Digest> out(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (!a[i].is_string() || !digest_from_hex(a[i].get<std::string>(), &out[i]))
      return Status::Corruption(what + ": entry " + std::to_string(i) + " is not 64 hex digits");
  return out;
}

}  // namespace

std::string layer_proof_json(const LayerProof& p) {
  json tensors = json::array();
  for (const LayerProofLeaf& t : p.tensors)
    tensors.push_back({{"index", t.index},
                       {"name", t.name},
                       {"hash", digest_hex(t.hash)},
                       {"path", hex_list(t.path)}});
  const json j = {{"format", "swarm.layer-proof.v1"},
                  {"model_id", p.model_id},
                  {"layout_id", p.layout_id},
                  {"n_leaves", p.n_leaves},
                  {"n_layer", p.n_layer},
                  {"layers", {p.first_layer, p.last_layer}},
                  {"header_path", hex_list(p.header_path)},
                  {"tensors", tensors}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<LayerProof> parse_layer_proof(const std::string& text) {
  if (text.size() > kMaxProofBytes)
    return Status::Corruption("layer proof: over " + std::to_string(kMaxProofBytes) + " bytes");
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Status::Corruption("layer proof: not a JSON object");
  try {
    if (j.value("format", "") != "swarm.layer-proof.v1")
      return Status::Unsupported("layer proof: format is not swarm.layer-proof.v1");
    LayerProof p;
    p.model_id = j.at("model_id").get<std::string>();
    p.layout_id = j.at("layout_id").get<std::string>();
    p.n_leaves = j.at("n_leaves").get<uint64_t>();
    p.n_layer = j.at("n_layer").get<int>();
    const json& layers = j.at("layers");
    if (!layers.is_array() || layers.size() != 2)
      return Status::Corruption("layer proof: layers is not [first, last]");
    p.first_layer = layers[0].get<int>();
    p.last_layer = layers[1].get<int>();
    auto header = parse_hex_list(j.at("header_path"), "layer proof: header_path");
    if (!header.ok()) return header.status();
    p.header_path = std::move(header).value();
    const json& tensors = j.at("tensors");
    if (!tensors.is_array() || tensors.size() > kMaxProofTensors)
      return Status::Corruption("layer proof: tensors is not an array of at most " +
                                std::to_string(kMaxProofTensors));
    for (const json& t : tensors) {
      LayerProofLeaf leaf;
      leaf.index = t.at("index").get<uint64_t>();
      leaf.name = t.at("name").get<std::string>();
      if (!digest_from_hex(t.at("hash").get<std::string>(), &leaf.hash))
        return Status::Corruption("layer proof: the hash of '" + leaf.name.substr(0, 80) +
                                  "' is not 64 hex digits");
      auto path = parse_hex_list(t.at("path"),
                                 "layer proof: the path of '" + leaf.name.substr(0, 80) + "'");
      if (!path.ok()) return path.status();
      leaf.path = std::move(path).value();
      p.tensors.push_back(std::move(leaf));
    }
    return p;
  } catch (const std::exception& e) {
    return Status::Corruption(
        std::string("layer proof: a field is missing or of the wrong type (") + e.what() + ")");
  }
}

}  // namespace swarm::net
