#include "cli/common.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <malloc.h>

#include <spdlog/spdlog.h>

#include "engine/compute_devices.h"
#include "net/identity.h"
#include "net/tls.h"

namespace swarm::cli {

void fail(const std::string& message) {
  std::fprintf(stderr, "swarm: %s\n", message.c_str());
  throw CLI::RuntimeError(1);
}

void keep_freed_memory_for_reuse() {
  constexpr int kKeep = 64 << 20;
  // Allocations below the mmap threshold come from the heap, which is trimmed
  // only past the trim threshold; both fixed (mallopt turns off glibc's
  // sliding threshold) so steady traffic reuses the same pages.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, kKeep);
}

Result<std::vector<int32_t>> parse_token_list(const std::string& s) {
  std::vector<int32_t> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t comma = s.find(',', i);
    const std::string item = s.substr(i, comma == std::string::npos ? std::string::npos : comma - i);
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
      return Status::InvalidArgument("--tokens: '" + item + "' is not a token id (expected e.g. 1,2,3)");
    out.push_back(static_cast<int32_t>(v));
    if (comma == std::string::npos) break;
    i = comma + 1;
  }
  return out;
}

Result<std::pair<int, int>> parse_layer_range(const std::string& s) {
  int a = 0, b = 0;
  char extra = 0;
  if (std::sscanf(s.c_str(), "%d:%d%c", &a, &b, &extra) != 2 || a < 0 || b <= a)
    return Status::InvalidArgument("--layers: '" + s + "' is not a range A:B with 0 <= A < B");
  return std::make_pair(a, b);
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options) {
  LoadOptions o = options;
  o.progress = true;  // drawn only when stderr is a terminal
  auto m = Model::Load(path, o);
  if (!m.ok()) fail(m.status().ToString());
  return std::move(m).value();
}

const DeviceList& machine_devices() {
  static const DeviceList list = list_compute_devices();
  return list;
}

std::string device_or_default(const std::string& flag) {
  if (!flag.empty()) return flag;
  return default_device(machine_devices().devices).id();
}

Status start_on_device(const std::string& flag,
                       const std::function<Status(const std::string& device)>& start) {
  const std::string device = device_or_default(flag);
  Status st = start(device);
  if (st.ok() || !flag.empty() || device == "cpu") return st;
  spdlog::warn("cannot run on {} ({}): running on the CPU (--device names one)", device,
               st.message());
  return start("cpu");
}

std::unique_ptr<Model> load_model_on(const std::string& path, LoadOptions options,
                                     const std::string& device_flag) {
  std::unique_ptr<Model> model;
  check(start_on_device(device_flag, [&](const std::string& device) {
    options.device = device;
    options.progress = true;  // drawn only when stderr is a terminal
    auto m = Model::Load(path, options);
    if (!m.ok()) return m.status();
    model = std::move(m).value();
    return Status::Ok();
  }));
  return model;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, int n_vocab) {
  auto tok = Tokenizer::Load(path);
  if (!tok.ok()) fail(tok.status().ToString());
  if ((*tok)->vocab_size() == 0) fail(path + ": the vocabulary is empty");
  if ((*tok)->vocab_size() > n_vocab)
    fail(path + ": the tokenizer has " + std::to_string((*tok)->vocab_size()) + " tokens but the model only " +
         std::to_string(n_vocab) + " embedding rows");
  return std::move(tok).value();
}

void use_caller_identity(const std::string& key_path) {
  if (key_path.empty()) {
    auto cert = net::default_client_certificate();  // made now: ephemeral
    if (cert) spdlog::info("calling TLS nodes as ephemeral identity {}", cert->node_id);
    return;
  }
  auto identity = net::Identity::Load(key_path);
  if (!identity.ok()) fail("--identity: " + identity.status().ToString());
  auto cert = net::client_certificate_of(*identity);
  if (!cert.ok()) fail("--identity: " + cert.status().ToString());
  net::set_default_client_certificate(*cert);
  spdlog::info("calling TLS nodes as node {}", (*cert)->node_id);
}

void write_f32(const std::string& path, const float* data, size_t n) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) fail(path + ": " + std::strerror(errno));
  const size_t written = std::fwrite(data, sizeof(float), n, f);
  if (std::fclose(f) != 0 || written != n) fail(path + ": write failed");
}

}  // namespace swarm::cli
