// The key/value cache of one sequence, for the layers one node holds.
//
// Positions are implicit: the i-th cached entry is position i. Speculative
// decoding appends drafted tokens and rolls back the rejected ones with
// truncate(), which costs nothing: later appends overwrite the old entries.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/status.h"

namespace swarm {

class KvCache {
 public:
  // Holds layers [first_layer, last_layer), each with `kv_dim` floats of K and of
  // V per position, for at most `max_len` positions.
  KvCache(int first_layer, int last_layer, int kv_dim, int max_len);
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

  // Floats from one position's K (or V) to the next position's.
  int64_t position_stride() const { return 2 * int64_t{kv_dim_}; }
  float* k(int layer, int pos) { return data_for(layer, pos, 0); }
  float* v(int layer, int pos) { return data_for(layer, pos, 1); }
  const float* k(int layer, int pos) const { return const_cast<KvCache*>(this)->data_for(layer, pos, 0); }
  const float* v(int layer, int pos) const { return const_cast<KvCache*>(this)->data_for(layer, pos, 1); }

  // Bytes this cache takes when full.
  static uint64_t bytes_for(int n_layers, int kv_dim, int max_len) {
    return 2ull * n_layers * kv_dim * max_len * sizeof(float);
  }

 private:
  float* data_for(int layer, int pos, int which);
  void grow_to(int positions);

  int first_layer_;
  int last_layer_;
  int kv_dim_;
  int max_len_;
  int length_ = 0;
  int capacity_ = 0;  // positions allocated so far; grows geometrically up to max_len
  // One buffer per held layer, [capacity][2][kv_dim]: K then V of each position.
  std::vector<std::vector<float>> layers_;
};

}  // namespace swarm
