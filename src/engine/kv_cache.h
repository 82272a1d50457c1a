// The key/value cache of one sequence, for the layers one node holds.
//
// Positions are implicit: the i-th cached entry is position i. Speculative
// decoding appends drafted tokens and rolls back the rejected ones with
// truncate(), which costs nothing: later appends overwrite the old entries.
//
// KvCache is the handle every caller holds; the memory behind it is a KvStorage
// made by the backend that runs the layers (host memory for the CPU, device
// memory for a GPU). The handle stays one concrete class rather than an interface
// per backend because its rules (the length limit, rollback, what an error says)
// must be the same whatever the device, and callers keep a plain
// std::unique_ptr<KvCache>; a backend only supplies memory, and reads it through
// storage().
#pragma once

#include <cstdint>
#include <memory>

#include "engine/status.h"

namespace swarm {

// One sequence's K and V on some device. Made by ComputeBackend::new_kv_storage; only
// that kind of backend knows (and downcasts to) its concrete type.
class KvStorage {
 public:
  virtual ~KvStorage() = default;
  // Makes positions [0, positions) writable, keeping those already written;
  // `positions` is at most the max_len the storage was made for. May grow
  // ahead (geometrically); ResourceExhausted if the device's memory runs out.
  virtual Status grow_to(int positions) = 0;
};

class KvCache {
 public:
  // Holds layers [first_layer, last_layer), each with `kv_dim` floats of K and of
  // V per position, for at most `max_len` positions, in `storage` (made for
  // those). Model::new_cache makes one with its backend's storage.
  KvCache(int first_layer, int last_layer, int kv_dim, int max_len,
          std::unique_ptr<KvStorage> storage);
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int first_layer() const { return first_layer_; }
  int last_layer() const { return last_layer_; }
  int kv_dim() const { return kv_dim_; }
  int max_len() const { return max_len_; }
  int length() const { return length_; }

  // Makes room for `n` more positions, or returns ResourceExhausted naming the limit.
  Status reserve(int n);
  // Forgets every position from `new_length` on. new_length > length() is an error.
  Status truncate(int new_length);
  // Marks `n` positions appended; the model has written their K and V already.
  void commit(int n) { length_ += n; }

  // The backend's memory behind this cache.
  KvStorage& storage() { return *storage_; }
  const KvStorage& storage() const { return *storage_; }

  // Bytes this cache takes when full, as float32 K and V: what memory budgets
  // count. No backend's storage takes more.
  static uint64_t bytes_for(int n_layers, int kv_dim, int max_len) {
    return 2ull * n_layers * kv_dim * max_len * sizeof(float);
  }

 private:
  int first_layer_;
  int last_layer_;
  int kv_dim_;
  int max_len_;
  int length_ = 0;
  std::unique_ptr<KvStorage> storage_;
};

}  // namespace swarm
