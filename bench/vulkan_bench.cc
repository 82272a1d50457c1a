// Vulkan kernel speed on one device, one JSON line per result, each naming the
// device. Decode is memory-bound, so the matrix x vector kernels are reported in
// GB/s of weights read, beside the device's own copy bandwidth (a copy kernel,
// bytes read + written per second, in the same run) and their fraction of it.
// Shape: TinyLlama-1.1B's ffn_gate/ffn_up (GGUF ne 2048 x 5632: 5632 rows of
// 2048). With --prefill, also n = 64 tokens in GFLOP/s.
//
// Usage: vulkan_bench [--device N] [--types F32,Q4_K,...] [--prefill]
// N is the place among the Vulkan devices `swarm devices` lists (vulkan:N);
// the default is the first. On lavapipe (Mesa's software device) the numbers
// are only for the record.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/compute_devices.h"
#include "engine/quants.h"
#include "engine/tensor_types.h"
#include "engine/vulkan_kernels.h"

namespace swarm {
namespace {

using nlohmann::json;

void emit(json j) { std::printf("%s\n", j.dump().c_str()); }

#ifdef SWARM_HAVE_VULKAN_KERNELS

constexpr int64_t kRows = 5632, kCols = 2048;

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds per step of `record` (which records `per_batch` steps into a batch),
// best of three batches, after a warm-up batch that also compiles the pipelines.
template <typename Record>
Result<double> seconds_per_step(vk::VulkanContext& ctx, int per_batch, Record record) {
  double best = 1e30;
  for (int rep = 0; rep < 4; ++rep) {
    vk::CommandBatch batch(ctx);
    for (int i = 0; i < per_batch; ++i) SWARM_RETURN_IF_ERROR(record(batch));
    const double t0 = now();
    SWARM_RETURN_IF_ERROR(batch.run());
    if (rep > 0) best = std::min(best, (now() - t0) / per_batch);
  }
  return best;
}

// Steps per batch so that a batch takes about a quarter of a second.
template <typename Record>
Result<int> calibrate(vk::VulkanContext& ctx, Record record) {
  Result<double> one = seconds_per_step(ctx, 1, record);
  if (!one.ok()) return one.status();
  return static_cast<int>(std::clamp(0.25 / std::max(*one, 1e-6), 1.0, 1000.0));
}

// A matrix of `type` holding one quantised random row, repeated: real blocks,
// made quickly.
std::vector<uint8_t> make_matrix(TensorType type) {
  std::vector<float> row(kCols);
  for (int64_t i = 0; i < kCols; ++i)
    row[i] = static_cast<float>((i * 7919) % 2001 - 1000) / 1000.0f;
  const size_t rb = row_size(type, kCols);
  std::vector<uint8_t> data(rb * kRows);
  if (type == TensorType::F32) {
    std::memcpy(data.data(), row.data(), rb);
  } else {
    quantize_row(type, row.data(), data.data(), kCols);
  }
  for (int64_t r = 1; r < kRows; ++r) std::memcpy(data.data() + r * rb, data.data(), rb);
  return data;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

int run(int argc, char** argv) {
  int device = -1;
  bool prefill = false;
  std::vector<std::string> types = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--device" && i + 1 < argc) {
      device = std::stoi(argv[++i]);
    } else if (a == "--types" && i + 1 < argc) {
      types = split(argv[++i]);
    } else if (a == "--prefill") {
      prefill = true;
    } else {
      std::fprintf(stderr, "usage: %s [--device N] [--types F32,Q4_K,...] [--prefill]\n", argv[0]);
      return 2;
    }
  }
  if (device < 0) {
    const DeviceList list = list_compute_devices();
    for (const ComputeDevice& d : list.devices)
      if (d.backend == "vulkan" && device < 0) device = d.index;
    if (device < 0) {
      emit({{"bench", "vulkan"}, {"skipped", "no Vulkan device: " + list.vulkan_note}});
      return 0;
    }
  }
  Result<std::unique_ptr<vk::VulkanContext>> opened = vk::VulkanContext::open(device);
  if (!opened.ok()) {
    std::fprintf(stderr, "vulkan_bench: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  vk::VulkanContext& ctx = **opened;
  const json base = {{"device", ctx.device_name()}, {"subgroups", ctx.subgroups()}};
  auto fail = [&](const Status& st) {
    std::fprintf(stderr, "vulkan_bench: %s\n", st.ToString().c_str());
    return 1;
  };

  // Copy bandwidth: 64 MiB (within every device's largest binding) each way.
  double copy_gbps = 0;
  {
    const uint64_t bytes = std::min<uint64_t>(64ull << 20, ctx.max_buffer_bytes() / 16 * 16);
    Result<vk::VulkanBuffer> src = ctx.create_buffer(bytes, vk::BufferKind::kDevice);
    Result<vk::VulkanBuffer> dst = ctx.create_buffer(bytes, vk::BufferKind::kDevice);
    if (!src.ok()) return fail(src.status());
    if (!dst.ok()) return fail(dst.status());
    auto record = [&](vk::CommandBatch& b) { return vk::copy_kernel(b, *src, *dst, bytes); };
    Result<int> steps = calibrate(ctx, record);
    if (!steps.ok()) return fail(steps.status());
    Result<double> s = seconds_per_step(ctx, *steps, record);
    if (!s.ok()) return fail(s.status());
    copy_gbps = 2.0 * bytes / *s / 1e9;
    json j = base;
    j.update({{"bench", "vulkan_copy"}, {"bytes", bytes}, {"us", *s * 1e6}, {"gbps", copy_gbps}});
    emit(j);
  }

  for (const std::string& name : types) {
    TensorType type;
    if (!parse_type_name(name, &type) || !vk::matmul_supports(type)) {
      std::fprintf(stderr, "vulkan_bench: no Vulkan matmul for type %s\n", name.c_str());
      return 2;
    }
    const std::vector<uint8_t> data = make_matrix(type);
    Result<vk::DeviceMatrix> w = vk::upload_matrix(ctx, {type, kCols, kRows, data.data()});
    if (!w.ok()) return fail(w.status());
    std::vector<int64_t> token_counts = {1};
    if (prefill) token_counts.push_back(64);
    for (int64_t n : token_counts) {
      std::vector<float> x(n * kCols, 0.5f);
      Result<vk::VulkanBuffer> xb = ctx.create_buffer(x.size() * 4, vk::BufferKind::kDevice);
      Result<vk::VulkanBuffer> yb = ctx.create_buffer(n * kRows * 4, vk::BufferKind::kDevice);
      if (!xb.ok()) return fail(xb.status());
      if (!yb.ok()) return fail(yb.status());
      if (Status st = ctx.upload(*xb, 0, x.data(), x.size() * 4); !st.ok()) return fail(st);
      auto record = [&](vk::CommandBatch& b) { return vk::matmul(b, *w, *xb, n, *yb); };
      Result<int> steps = calibrate(ctx, record);
      if (!steps.ok()) return fail(steps.status());
      Result<double> s = seconds_per_step(ctx, *steps, record);
      if (!s.ok()) return fail(s.status());
      const double gbps = data.size() / *s / 1e9;
      json j = base;
      j.update({{"bench", n == 1 ? "vulkan_matvec" : "vulkan_matmul"},
                {"type", name},
                {"rows", kRows},
                {"cols", kCols},
                {"n_tokens", n},
                {"us", *s * 1e6},
                {"gbps", gbps},
                {"gflops", 2.0 * kRows * kCols * n / *s / 1e9}});
      if (n == 1) j["copy_fraction"] = gbps / copy_gbps;
      emit(j);
    }
  }
  return 0;
}

#else

int run(int, char**) {
  emit({{"bench", "vulkan"},
        {"skipped", "this build has no Vulkan kernels (install libvulkan-dev and glslc)"}});
  return 0;
}

#endif  // SWARM_HAVE_VULKAN_KERNELS

}  // namespace
}  // namespace swarm

int main(int argc, char** argv) { return swarm::run(argc, argv); }
