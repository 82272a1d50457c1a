// A 64-byte-aligned buffer that a thread keeps between calls for its hot loops'
// temporaries (activations, widened weight rows): allocating and zeroing fresh
// ones in every call costs page faults for anything big. It grows to what a call
// needs and shrinks again when a big request (a long prompt's prefill: ~90 MB for
// one FFN buffer of an 8B model at 4096 tokens) is followed by a small one, so a
// thread does not hold its largest batch's memory for good. Contents are not
// kept across calls that grow or shrink it, and are never zeroed.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace swarm {

class ScratchBuffer {
 public:
  void* get(size_t bytes) {
    constexpr size_t kKeep = size_t{16} << 20;  // bytes kept whatever the call
    if (size_ < bytes || (size_ > kKeep && size_ > 4 * bytes)) {
      data_.reset(
          static_cast<std::byte*>(::operator new[](bytes == 0 ? 1 : bytes, std::align_val_t{64})));
      size_ = bytes;
    }
    return data_.get();
  }
  template <typename T>
  T* get(size_t count) {
    return static_cast<T*>(get(count * sizeof(T)));
  }

 private:
  struct Free {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t size_ = 0;
};

}  // namespace swarm
