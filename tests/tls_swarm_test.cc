// TLS pinned to node identities, end to end: `swarm keygen` identities, `swarm
// node --identity` processes, a `swarm gateway` whose --peers pin them, all on
// 127.0.0.1 with real gRPC. A pinned chain answers exactly what one process
// answers; a node holding another key than its pin is refused, and says so.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/test_data.h"
#include "engine/test_process.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::eventually;
using swarm::testing::find_testdata;
using swarm::testing::run_swarm;
using swarm::testing::shell_quote;
using json = nlohmann::json;

const char* kPrompt = "Once upon a time";

struct KeyFile {
  std::string path, node_id, public_key;  // ids in hex
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TlsSwarmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    if (model_.empty())
      GTEST_SKIP() << "tiny-llama-Q8_0.gguf is in neither tests/data nor ../shared/testdata";
    dir_ = ::testing::TempDir() + "/tls_swarm_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    gateways_.clear();
    nodes_.clear();
    std::filesystem::remove_all(dir_);
  }

  // A fresh identity from `swarm keygen`: the node id it prints, and the public
  // key from the key file (the second half of its 64-byte secret key).
  KeyFile keygen(const std::string& name) {
    KeyFile k;
    k.path = dir_ + "/" + name + ".key";
    auto r = run_swarm("keygen -o " + shell_quote(k.path));
    EXPECT_EQ(r.code, 0) << r.out;
    std::stringstream out(r.out);
    for (std::string line; std::getline(out, line);)
      if (line.size() == 40) k.node_id = line;
    std::stringstream file(read_file(k.path));
    std::string magic, secret;
    file >> magic >> secret;
    EXPECT_EQ(secret.size(), 128u);
    if (secret.size() == 128) k.public_key = secret.substr(64);
    EXPECT_EQ(k.node_id.size(), 40u) << r.out;
    return k;
  }

  // A node serving [a, b) with `key`'s identity (none: plaintext); its address.
  std::string node(int a, int b, const KeyFile* key) {
    std::vector<std::string> args = {
        "node",     "-m",          model_, "--layers", std::to_string(a) + ":" + std::to_string(b),
        "--listen", "127.0.0.1:0", "-t",   "1"};
    if (key) args.insert(args.end(), {"--identity", key->path});
    nodes_.push_back(std::make_unique<ChildProcess>(
        args, dir_ + "/node" + std::to_string(nodes_.size()) + ".err"));
    EXPECT_TRUE(nodes_.back()->ok())
        << read_file(dir_ + "/node" + std::to_string(nodes_.size() - 1) + ".err");
    return nodes_.back()->address();
  }

  // A gateway over `peers` (the --peers value); its stderr goes to log(i).
  ChildProcess* gateway(const std::string& peers, const std::vector<std::string>& flags = {}) {
    std::vector<std::string> args = {"gateway", "-m",  model_,         "--listen", "127.0.0.1:0",
                                     "--peers", peers, "--model-name", "tiny"};
    args.insert(args.end(), flags.begin(), flags.end());
    gateways_.push_back(std::make_unique<ChildProcess>(args, log_path(gateways_.size())));
    EXPECT_TRUE(gateways_.back()->ok()) << read_file(log_path(gateways_.size() - 1));
    return gateways_.back().get();
  }
  std::string log_path(size_t gateway) const {
    return dir_ + "/gateway" + std::to_string(gateway) + ".err";
  }

  std::string complete(ChildProcess* gw, int n, int* status) {
    httplib::Client c("127.0.0.1", gw->port());
    c.set_read_timeout(120, 0);
    const json body = {
        {"model", "tiny"}, {"prompt", kPrompt}, {"max_tokens", n}, {"temperature", 0}};
    auto res = c.Post("/v1/completions", body.dump(), "application/json");
    *status = res ? res->status : -1;
    if (!res || res->status != 200) return res ? res->body : "<no answer>";
    return json::parse(res->body)["choices"][0]["text"].get<std::string>();
  }

  std::string single_process(int n) {
    auto r = run_swarm("generate -m " + model_ + " -p " + shell_quote(kPrompt) + " -n " +
                       std::to_string(n) + " --temp 0 -t 1");
    EXPECT_EQ(r.code, 0) << r.out;
    const std::string raw = r.out.substr(0, r.out.find('\n'));
    return json::parse(json(raw).dump(-1, ' ', false, json::error_handler_t::replace))
        .get<std::string>();
  }

  std::string model_, dir_;
  std::vector<std::unique_ptr<ChildProcess>> nodes_, gateways_;
};

// Two stages with identities, one pinned by node id and one by public key (in
// upper case): the gateway reaches both, they push to each other pinned (a
// plaintext push would not reach a TLS node), and the text is one process's.
// Relay mode, where the gateway carries every hop itself, gives the same.
TEST_F(TlsSwarmTest, PinnedTwoStageChainEqualsOneProcess) {
  const KeyFile a = keygen("a"), b = keygen("b");
  const std::string na = node(0, 2, &a), nb = node(2, 4, &b);
  std::string upper = b.public_key;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::string peers = na + "@" + a.node_id + "," + nb + "@" + upper;
  const std::string want = single_process(12);
  ASSERT_FALSE(want.empty());
  for (const std::vector<std::string>& flags : {std::vector<std::string>{}, {"--relay"}}) {
    ChildProcess* gw = gateway(peers, flags);
    ASSERT_TRUE(gw->ok());
    int status = 0;
    EXPECT_EQ(complete(gw, 12, &status), want) << (flags.empty() ? "push" : "relay");
    EXPECT_EQ(status, 200);
  }
}

// The node holds key A; a gateway pinned to key B refuses it (no route: 503) and
// logs the mismatch with both ids. A gateway that does not pin speaks plaintext
// and cannot reach a TLS node either. Pinned to A, the same node serves.
TEST_F(TlsSwarmTest, ANodeWhoseKeyIsNotThePinIsRefused) {
  const KeyFile a = keygen("a"), b = keygen("b");
  const std::string addr = node(0, 4, &a);

  ChildProcess* wrong = gateway(addr + "@" + b.node_id);
  ASSERT_TRUE(wrong->ok());
  int status = 0;
  const std::string body = complete(wrong, 4, &status);
  EXPECT_EQ(status, 503) << body;
  EXPECT_NE(body.find("service_unavailable"), std::string::npos) << body;
  EXPECT_TRUE(eventually([&] {
    const std::string log = read_file(log_path(0));
    return log.find("TLS identity mismatch") != std::string::npos &&
           log.find(a.node_id) != std::string::npos &&
           log.find("expected node id " + b.node_id) != std::string::npos;
  })) << read_file(log_path(0));

  ChildProcess* plain = gateway(addr);
  ASSERT_TRUE(plain->ok());
  complete(plain, 4, &status);
  EXPECT_EQ(status, 503);
  EXPECT_TRUE(eventually([&] {
    return read_file(log_path(1)).find("offers no route") != std::string::npos;
  })) << read_file(log_path(1));

  ChildProcess* right = gateway(addr + "@" + a.public_key);
  ASSERT_TRUE(right->ok());
  EXPECT_EQ(complete(right, 6, &status), single_process(6));
  EXPECT_EQ(status, 200);
}

// The node a pinned chain runs through dies and another node, with another
// identity but the same model, takes over its address: the gateway refuses it
// (logging the mismatch), routes through the other pinned node, and the text is
// still one process's. Without the pin the impostor would have been used.
TEST_F(TlsSwarmTest, AnImpostorAtAPinnedAddressIsRoutedAround) {
  const KeyFile a = keygen("a"), b = keygen("b"), c = keygen("c");
  const std::string na = node(0, 4, &a), nb = node(0, 4, &b);
  ChildProcess* gw = gateway(na + "@" + a.node_id + "," + nb + "@" + b.node_id);
  ASSERT_TRUE(gw->ok());
  const std::string want = single_process(8);
  int status = 0;
  ASSERT_EQ(complete(gw, 8, &status), want);

  // The gateway logs its first chain: "chain ADDR [0,4)".
  const std::string log = read_file(log_path(0));
  const size_t at = log.find("chain ");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string used = log.substr(at + 6, log.find(' ', at + 6) - at - 6);
  ASSERT_TRUE(used == na || used == nb) << used;
  nodes_[used == na ? 0 : 1].reset();  // killed; its address is free
  ChildProcess impostor({"node", "-m", model_, "--listen", used, "-t", "1", "--identity", c.path},
                        dir_ + "/impostor.err");
  ASSERT_TRUE(impostor.ok()) << read_file(dir_ + "/impostor.err");

  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(complete(gw, 8, &status), want) << "request " << i;
    EXPECT_EQ(status, 200);
  }
  const std::string after = read_file(log_path(0));
  EXPECT_NE(after.find("TLS identity mismatch"), std::string::npos) << after;
  EXPECT_NE(after.find("(node id " + c.node_id + ")"), std::string::npos) << after;
  EXPECT_EQ(read_file(dir_ + "/impostor.err").find("opened"), std::string::npos)
      << "the impostor got a session";
}

// A pin that is not a key or a node id is a usage error, not a plaintext peer.
TEST_F(TlsSwarmTest, MalformedPinsAreRefusedAtStart) {
  for (const std::string& peers :
       {std::string("127.0.0.1:7001@xyz"), "127.0.0.1:7001@" + std::string(63, 'a'),
        "@" + std::string(40, 'a')}) {
    auto r =
        run_swarm("gateway -m " + model_ + " --listen 127.0.0.1:0 --peers " + shell_quote(peers));
    EXPECT_NE(r.code, 0) << peers;
    EXPECT_NE(r.out.find("--peers"), std::string::npos) << r.out;
  }
}

}  // namespace
