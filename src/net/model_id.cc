#include "net/model_id.h"

#include <sodium.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/gguf.h"
#include "engine/safetensors.h"

namespace swarm::net {
namespace {

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

class Hasher {
 public:
  Hasher() { crypto_generichash_init(&state_, nullptr, 0, crypto_generichash_BYTES); }
  void update(const void* p, size_t n) {
    crypto_generichash_update(&state_, static_cast<const unsigned char*>(p), n);
  }
  void u64(uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    update(b, 8);
  }
  void str(const std::string& s) {
    u64(s.size());
    update(s.data(), s.size());
  }
  // Frames `n` bytes of `path` from offset 0 by kind and length, and hashes them.
  Status file_prefix(const std::string& kind, const std::string& path, uint64_t n) {
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
    if (!f) return Status::IOError(path + ": " + std::strerror(errno));
    str(kind);
    u64(n);
    std::vector<unsigned char> buf(1 << 16);
    uint64_t left = n;
    while (left > 0) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      const size_t got = std::fread(buf.data(), 1, want, f.get());
      if (got != want) return Status::IOError(path + ": short read while hashing its header");
      update(buf.data(), got);
      left -= got;
    }
    return Status::Ok();
  }
  std::string hex() {
    unsigned char out[crypto_generichash_BYTES];
    crypto_generichash_final(&state_, out, sizeof out);
    char hex[2 * crypto_generichash_BYTES + 1];
    sodium_bin2hex(hex, sizeof hex, out, sizeof out);
    return hex;
  }

 private:
  crypto_generichash_state state_;
};

uint64_t file_size(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f || std::fseek(f.get(), 0, SEEK_END) != 0) return 0;
  const long n = std::ftell(f.get());
  return n < 0 ? 0 : static_cast<uint64_t>(n);
}

}  // namespace

Result<std::string> model_content_id(const ModelSource& source) {
  if (sodium_init() < 0) return Status::Internal("libsodium failed to initialise");
  Hasher h;
  h.str("swarm.model-id.v1");
  h.str(source.format);
  if (source.format == "gguf") {
    const std::string& path = source.files.empty() ? source.path : source.files[0];
    auto gguf = read_gguf(path);
    if (!gguf.ok()) return gguf.status();
    SWARM_RETURN_IF_ERROR(h.file_prefix("gguf-header", path, gguf->data_offset));
  } else if (source.format == "hf") {
    const std::string config = source.path + "/config.json";
    SWARM_RETURN_IF_ERROR(h.file_prefix("config.json", config, file_size(config)));
    for (const std::string& file : source.files) {
      auto header = read_safetensors_header(file);
      if (!header.ok()) return header.status();
      SWARM_RETURN_IF_ERROR(h.file_prefix("safetensors-header", file, header->data_start));
    }
  } else {
    return Status::Unsupported("model format '" + source.format + "' has no content id");
  }
  return h.hex();
}

}  // namespace swarm::net
