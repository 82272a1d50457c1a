// The model id's cache (doc/protocol.md, "The id cache"): hashing a model's
// weights reads every byte, so the result is kept in a small JSON file beside
// the model ("MODEL.gguf.swarm-id", or ".swarm-id" inside a Hugging Face folder),
// keyed by the size, modification time (ns) and inode of every file hashed. A
// file that changed makes the entry stale: it is ignored and rewritten. Where the
// model's folder is not writable the file goes to $XDG_CACHE_HOME/swarm/ (or
// ~/.cache/swarm/), named by a hash of the model's absolute path.
//
// A cache file is input like any other: one that is corrupt, of another format
// version or for other files is ignored, never trusted in a way that can crash.
// The caller (net/model_id.cc) also checks that the entry's leaves reproduce its
// root and name the model's tensors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/model_source.h"
#include "engine/status.h"
#include "net/model_id.h"

namespace swarm::net {

inline constexpr char kModelIdCacheFormat[] = "swarm.model-id-cache.v1";
// Larger cache files are ignored (a model of a million tensors needs ~100 MB).
inline constexpr uint64_t kMaxModelIdCacheBytes = 256ull << 20;

// The state of one file hashed into the id.
struct FileStamp {
  std::string path;  // absolute
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t inode = 0;
  bool operator==(const FileStamp&) const = default;
};

// Stamps of the files the id depends on: the GGUF file; or config.json and every
// safetensors file of a Hugging Face folder.
Result<std::vector<FileStamp>> stamp_model_files(const ModelSource& source);

// Where the cache file lives beside the model.
std::string cache_path_beside(const ModelSource& source);
// Where it lives when the model's folder is not writable: $XDG_CACHE_HOME/swarm/
// (when set and absolute), else $HOME/.cache/swarm/, then the first 32 hex digits
// of BLAKE2b-256 of the model's absolute path and ".swarm-id". "" if neither
// variable is usable.
std::string cache_path_fallback(const ModelSource& source);

struct CacheEntry {
  ModelIds ids;
  std::vector<TensorLeaf> tensors;  // as the file lists them
};

// The entry in `path` if the file exists, is a regular file owned by this
// process's user, is well formed, of this format version and for exactly
// `stamps`; nullopt otherwise (never an exception or a crash).
std::optional<CacheEntry> read_model_id_cache(const std::string& path,
                                              const std::vector<FileStamp>& stamps);

// The cache file's text for `identity` over `stamps`.
std::string model_id_cache_json(const std::vector<FileStamp>& stamps,
                                const ModelIdentity& identity);

// Writes the cache file at `path` atomically (a temporary file renamed over it),
// creating its folder if `make_folder`. An IOError naming the path on failure.
Status write_model_id_cache(const std::string& path, const std::vector<FileStamp>& stamps,
                            const ModelIdentity& identity, bool make_folder);

}  // namespace swarm::net
