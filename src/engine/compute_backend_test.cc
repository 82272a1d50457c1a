// Model runs through the backend LoadOptions::device picks: the name is checked
// before the file is read, caches get that backend's memory, and a backend
// refuses a cache whose memory another kind of backend made.
#include "engine/compute_backend.h"

#include <gtest/gtest.h>

#include "engine/backend_select.h"
#include "engine/cpu_kv_storage.h"
#include "engine/model.h"
#include "engine/test_data.h"

namespace swarm {
namespace {

using testing::find_testdata;

std::string tiny_llama() { return find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf"); }

Result<std::unique_ptr<Model>> load_on(const std::string& device) {
  LoadOptions o;
  o.device = device;
  return Model::Load(tiny_llama(), o);
}

// KV memory of a backend that is not the CPU's, as a GPU backend's would be.
class ForeignKvStorage final : public KvStorage {
 public:
  explicit ForeignKvStorage(Status grow_result) : grow_result_(std::move(grow_result)) {}
  Status grow_to(int positions) override {
    grown_to = positions;
    return grow_result_;
  }
  int grown_to = 0;

 private:
  Status grow_result_;
};

TEST(ComputeBackend, DefaultDeviceIsTheCpuAndItsCachesLiveInHostMemory) {
  ASSERT_FALSE(tiny_llama().empty());
  auto m = Model::Load(tiny_llama());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->backend().name(), "cpu");
  EXPECT_TRUE((*m)->backend().exact());
  auto cache = (*m)->new_cache(1, 2, 8);
  EXPECT_EQ(cache->first_layer(), 1);
  EXPECT_EQ(cache->last_layer(), 2);
  EXPECT_EQ(cache->max_len(), 8);
  EXPECT_NE(dynamic_cast<CpuKvStorage*>(&cache->storage()), nullptr);
}

TEST(ComputeBackend, VulkanIsNamedAndAMissingDeviceSaysSo) {
  // Past the last device in a build with the Vulkan kernels (vulkan_backend_test.cc
  // runs the ones that exist); refused as unsupported in a build without them.
  auto m = load_on("vulkan:9999");
  ASSERT_FALSE(m.ok());
#ifdef SWARM_HAVE_VULKAN_KERNELS
  EXPECT_EQ(m.status().code(), Status::Code::kNotFound) << m.status().ToString();
#else
  EXPECT_EQ(m.status().code(), Status::Code::kUnsupported) << m.status().ToString();
  EXPECT_NE(m.status().message().find("no Vulkan kernels"), std::string::npos)
      << m.status().ToString();
#endif
  EXPECT_NE(m.status().message().find("device 'vulkan:9999'"), std::string::npos)
      << m.status().ToString();
}

TEST(ComputeBackend, UnknownDeviceIsRefusedNamingTheField) {
  for (const std::string device :
       {"nonsense", "", "CPU", "vulkan:", "vulkan:x", "vulkan:-1", "vulkan0"}) {
    auto m = load_on(device);
    ASSERT_FALSE(m.ok()) << device;
    EXPECT_EQ(m.status().code(), Status::Code::kInvalidArgument) << device;
    EXPECT_NE(m.status().message().find("device '" + device + "'"), std::string::npos)
        << m.status().ToString();
    EXPECT_NE(m.status().message().find("cpu, vulkan, vulkan:N"), std::string::npos)
        << m.status().ToString();
  }
  // Checked before the model is opened: a bad device wins over a missing file.
  LoadOptions o;
  o.device = "nonsense";
  auto m = Model::Load("/nonexistent/model.gguf", o);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Status::Code::kInvalidArgument) << m.status().ToString();
}

TEST(ComputeBackend, CacheReserveAsksTheBackendsStorage) {
  auto m = Model::Load(tiny_llama());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const Model& model = **m;
  auto storage =
      std::make_unique<ForeignKvStorage>(Status::ResourceExhausted("device memory is full"));
  ForeignKvStorage* seen = storage.get();
  KvCache cache(0, model.config().n_layer, model.kv_dim(), 16, std::move(storage));
  EXPECT_EQ(cache.reserve(17).code(),
            Status::Code::kResourceExhausted);  // past max_len: no device asked
  EXPECT_EQ(seen->grown_to, 0);
  const Status s = cache.reserve(5);
  EXPECT_EQ(s.message(), "device memory is full");
  EXPECT_EQ(seen->grown_to, 5);
}

TEST(ComputeBackend, CpuRefusesACacheAnotherBackendMade) {
  auto m = Model::Load(tiny_llama());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const Model& model = **m;
  const int L = model.config().n_layer;
  KvCache foreign(0, L, model.kv_dim(), 16, std::make_unique<ForeignKvStorage>(Status::Ok()));
  auto own = model.new_cache(16);
  const int32_t tokens[2] = {1, 2};
  std::vector<float> hidden(2 * model.config().n_embd);
  ASSERT_TRUE(model.embed(tokens, 2, hidden.data()).ok());
  const std::vector<float> before = hidden;
  ThreadPool pool(2);
  // One good chunk beside the foreign one: nothing runs, no cache advances.
  const Status s = model.run_layers(hidden.data(), {{own.get(), 1}, {&foreign, 1}}, 0, L, pool);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("not made by the cpu backend"), std::string::npos) << s.ToString();
  EXPECT_EQ(own->length(), 0);
  EXPECT_EQ(foreign.length(), 0);
  EXPECT_EQ(hidden, before);
}

TEST(ComputeBackend, SelectBackendGivesTheCpuBackendForCpu) {
  auto b = select_backend("cpu");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ((*b)->name(), "cpu");
}

}  // namespace
}  // namespace swarm
