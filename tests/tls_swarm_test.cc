// TLS pinned to node identities, end to end: `swarm keygen` identities, `swarm
// node --identity` processes, a `swarm gateway` whose --peers pin them, all on
// 127.0.0.1 with real gRPC. A pinned chain answers exactly what one process
// answers; a node holding another key than its pin is refused, and says so.
#include <gtest/gtest.h>

#include <cctype>

#include "swarm_harness.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::eventually;
using swarm::testing::KeyFile;
using swarm::testing::read_file;
using swarm::testing::run_swarm;
using swarm::testing::shell_quote;

const char* kPrompt = "Once upon a time";

class TlsSwarmTest : public swarm::testing::SwarmHarness {
 protected:
  // A node serving [a, b) with `key`'s identity (none: plaintext); its address.
  std::string node(int a, int b, const KeyFile* key) {
    std::vector<std::string> args = swarm::testing::layers(a, b);
    if (key) args.insert(args.end(), {"--identity", key->path});
    return start_node(args)->address();
  }

  // A gateway over `peers` (the --peers value); its stderr goes to gateway_log(i).
  ChildProcess* gateway(const std::string& peers, const std::vector<std::string>& flags = {}) {
    std::vector<std::string> args = {"--peers", peers};
    args.insert(args.end(), flags.begin(), flags.end());
    return start_gateway(args);
  }

  std::string complete(ChildProcess* gw, int n, int* status) {
    return SwarmHarness::complete(kPrompt, n, status, gw);
  }
  std::string single_process(int n) { return SwarmHarness::single_process(kPrompt, n); }
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
    const std::string log = read_file(gateway_log(0));
    return log.find("TLS identity mismatch") != std::string::npos &&
           log.find(a.node_id) != std::string::npos &&
           log.find("expected node id " + b.node_id) != std::string::npos;
  })) << read_file(gateway_log(0));

  ChildProcess* plain = gateway(addr);
  ASSERT_TRUE(plain->ok());
  complete(plain, 4, &status);
  EXPECT_EQ(status, 503);
  EXPECT_TRUE(eventually([&] {
    return read_file(gateway_log(1)).find("offers no route") != std::string::npos;
  })) << read_file(gateway_log(1));

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
  const std::string log = read_file(gateway_log(0));
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
  const std::string after = read_file(gateway_log(0));
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
