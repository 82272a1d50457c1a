// TLS pinned to node identities, end to end: `swarm keygen` identities, `swarm
// node --identity` processes, a `swarm gateway` whose --peers pin them, all on
// 127.0.0.1 with real gRPC. A pinned chain answers exactly what one process
// answers; a node holding another key than its pin is refused, and says so.
// Callers are known too (mutual TLS): a node serves sessions only to callers
// that present an identity, --allow narrows that to a list, quotas count per
// identity, and an identity node pushes only to pinned next hops.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <optional>

#include "net/channel_cache.h"
#include "net/identity.h"
#include "net/tls.h"
#include "swarm/v1/stage.grpc.pb.h"
#include "swarm_harness.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::eventually;
using swarm::testing::KeyFile;
using swarm::testing::read_file;
using swarm::testing::run_swarm;
using swarm::testing::shell_quote;

const char* kPrompt = "Once upon a time";

using swarm::net::ClientCertificate;
using swarm::v1::StageRequest;
using swarm::v1::StageResponse;

// A fresh caller identity and the certificate it presents.
std::shared_ptr<const ClientCertificate> new_caller() {
  auto id = swarm::net::Identity::Generate();
  EXPECT_TRUE(id.ok());
  auto cert = swarm::net::client_certificate_of(*id);
  EXPECT_TRUE(cert.ok());
  return *cert;
}

// A Session stream to the TLS node at `address` pinned to `pin`, presenting
// `client` (null: no certificate, an anonymous caller). Every call is bounded
// by the stream's 30 s deadline.
class RawSession {
 public:
  RawSession(const std::string& address, const std::string& pin,
             const std::shared_ptr<const ClientCertificate>& client) {
    const swarm::net::KeyPin parsed = *swarm::net::KeyPin::Parse(pin);
    grpc::ChannelArguments args = swarm::net::channel_arguments();
    args.SetSslTargetNameOverride(swarm::net::pinned_node_id(parsed));
    stub_ = swarm::v1::Stage::NewStub(grpc::CreateCustomChannel(
        address, swarm::net::pinned_channel_credentials(parsed, address, client), args));
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    stream_ = stub_->Session(&ctx_);
  }
  ~RawSession() {
    ctx_.TryCancel();
    finish();
  }

  bool send(const StageRequest& r) { return stream_->Write(r); }
  // Sends `r` and returns the next response; none when the stream ended
  // (finish() then says why).
  std::optional<StageResponse> call(const StageRequest& r) {
    stream_->Write(r);  // a refused stream may take it or not: the read tells
    StageResponse resp;
    if (stream_->Read(&resp)) return resp;
    return std::nullopt;
  }
  grpc::Status finish() {
    if (!finished_) {
      finished_ = true;
      status_ = stream_->Finish();
    }
    return status_;
  }

 private:
  std::unique_ptr<swarm::v1::Stage::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<StageRequest, StageResponse>> stream_;
  bool finished_ = false;
  grpc::Status status_;
};

// Info of the node at `address` pinned to `pin` (as this process's default caller).
swarm::v1::InfoResponse node_info(const std::string& address, const std::string& pin) {
  auto stub = swarm::v1::Stage::NewStub(swarm::net::make_channel(address, pin));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  swarm::v1::InfoResponse r;
  const grpc::Status st = stub->Info(&ctx, swarm::v1::InfoRequest(), &r);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return r;
}

StageRequest open_request(const std::string& session, const swarm::v1::InfoResponse& info) {
  StageRequest r;
  swarm::v1::OpenSession* o = r.mutable_open();
  o->set_session_id(session);
  o->set_model_id(info.model_id());
  o->set_first_layer(info.first_layer());
  o->set_last_layer(info.last_layer());
  o->set_max_length(32);
  o->set_is_first(info.first_layer() == 0);
  o->set_is_last(info.last_layer() == info.n_layer());
  o->mutable_sampling()->set_temperature(0);
  return r;
}

StageRequest close_request(const std::string& session) {
  StageRequest r;
  r.mutable_close()->set_session_id(session);
  return r;
}

// What `resp` says, for failure messages.
std::string describe(const std::optional<StageResponse>& resp) {
  return resp ? resp->DebugString() : std::string("<stream ended>");
}

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

// Callers must present an identity: one without a certificate still gets Info
// (what the node's record says anyway) but its Session stream ends at once with
// UNAUTHENTICATED saying why; with a certificate it opens sessions. A node
// started with --allow-anonymous serves it too.
TEST_F(TlsSwarmTest, ACallerWithoutAnIdentityIsRefusedSessionsButGetsInfo) {
  const KeyFile a = keygen("a"), b = keygen("b");
  const std::string na = node(0, 4, &a);
  ChildProcess* open_node =
      start_node({"--layers", "0:4", "--identity", b.path, "--allow-anonymous"});
  ASSERT_TRUE(open_node->ok());
  const swarm::v1::InfoResponse info = node_info(na, a.node_id);
  ASSERT_EQ(info.node_id(), a.node_id);

  RawSession anonymous(na, a.node_id, nullptr);
  const auto refused = anonymous.call(open_request("anon", info));
  EXPECT_FALSE(refused.has_value()) << describe(refused);
  const grpc::Status st = anonymous.finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  EXPECT_NE(st.error_message().find("client certificate"), std::string::npos)
      << st.error_message();

  RawSession known(na, a.node_id, new_caller());
  const auto opened = known.call(open_request("known", info));
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->kind_case(), StageResponse::kOpened) << describe(opened);

  RawSession welcome(open_node->address(), b.node_id, nullptr);
  const auto also = welcome.call(open_request("anon", info));
  ASSERT_TRUE(also.has_value());
  EXPECT_EQ(also->kind_case(), StageResponse::kOpened) << describe(also);
}

// --allow admits the listed gateway (the text is one process's) and refuses
// another with PERMISSION_DENIED naming its node id; in a chain, the node after
// the first must list the first, which pushes to it presenting its own
// identity: listed, the pushed chain works; not listed, only relay does.
TEST_F(TlsSwarmTest, AllowAdmitsListedCallersAndRefusesOthersByNodeId) {
  const KeyFile a = keygen("a"), b = keygen("b"), g1 = keygen("g1"), g2 = keygen("g2");
  ChildProcess* first =
      start_node({"--layers", "0:2", "--identity", a.path, "--allow", g1.node_id});
  ASSERT_TRUE(first->ok());
  // B lists g1 by node id and A by public key, in a file.
  const std::string allow_file = dir_ + "/allow.txt";
  {
    std::ofstream f(allow_file);
    f << "# gateways\n" << g1.node_id << "\n" << a.public_key << "  # stage A\n";
  }
  ChildProcess* second =
      start_node({"--layers", "2:4", "--identity", b.path, "--allow", allow_file});
  ASSERT_TRUE(second->ok());
  const std::string peers =
      first->address() + "@" + a.node_id + "," + second->address() + "@" + b.node_id;
  const std::string want = single_process(8);

  ChildProcess* listed = gateway(peers, {"--identity", g1.path});
  ASSERT_TRUE(listed->ok());
  int status = 0;
  EXPECT_EQ(complete(listed, 8, &status), want);
  EXPECT_EQ(status, 200);
  // Each node knows who called: the gateway opened the sessions at both.
  for (size_t i : {0, 1})
    EXPECT_NE(read_file(node_log(i)).find("opened by node:" + g1.node_id), std::string::npos)
        << read_file(node_log(i));

  ChildProcess* other = gateway(peers, {"--identity", g2.path});
  ASSERT_TRUE(other->ok());
  const std::string body = complete(other, 4, &status);
  EXPECT_NE(status, 200) << body;
  EXPECT_TRUE(eventually([&] {
    return read_file(node_log(0)).find("node " + g2.node_id +
                                       " is not on this node's allow list") != std::string::npos;
  })) << read_file(node_log(0));

  // The refusal a caller gets names it.
  auto g2_id = swarm::net::Identity::Load(g2.path);
  ASSERT_TRUE(g2_id.ok());
  RawSession raw(first->address(), a.node_id, *swarm::net::client_certificate_of(*g2_id));
  const auto none = raw.call(open_request("s", node_info(first->address(), a.node_id)));
  EXPECT_FALSE(none.has_value()) << describe(none);
  const grpc::Status st = raw.finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find(g2.node_id), std::string::npos) << st.error_message();

  // A third stage B' that lists g1 but not A: pushes from A are refused, relay
  // (the gateway carries every hop) still works.
  ChildProcess* strict =
      start_node({"--layers", "2:4", "--identity", b.path, "--allow", g1.node_id});
  ASSERT_TRUE(strict->ok());
  const std::string strict_peers =
      first->address() + "@" + a.node_id + "," + strict->address() + "@" + b.node_id;
  ChildProcess* relay = gateway(strict_peers, {"--identity", g1.path, "--relay"});
  ASSERT_TRUE(relay->ok());
  EXPECT_EQ(complete(relay, 8, &status), want);
  EXPECT_EQ(status, 200);
  ChildProcess* pushed = gateway(strict_peers, {"--identity", g1.path});
  ASSERT_TRUE(pushed->ok());
  complete(pushed, 4, &status);
  EXPECT_NE(status, 200);
  EXPECT_TRUE(eventually([&] {
    return read_file(node_log(2)).find("node " + a.node_id +
                                       " is not on this node's allow list") != std::string::npos;
  })) << read_file(node_log(2));
  // A's push was refused, and the step failed at once with that answer.
  EXPECT_TRUE(eventually([&] {
    return read_file(gateway_log()).find("is not on this node's allow list") != std::string::npos;
  })) << read_file(gateway_log());
}

// --max-sessions-per-caller 2: a caller's third session is refused with
// RESOURCE_EXHAUSTED naming it, while another identity still opens, and a
// closed session gives its place back.
TEST_F(TlsSwarmTest, ThePerCallerSessionCapRefusesOneIdentityNotAnother) {
  const KeyFile a = keygen("a");
  ChildProcess* n =
      start_node({"--layers", "0:4", "--identity", a.path, "--max-sessions-per-caller", "2"});
  ASSERT_TRUE(n->ok());
  const swarm::v1::InfoResponse info = node_info(n->address(), a.node_id);
  const auto x = new_caller(), y = new_caller();
  RawSession sx(n->address(), a.node_id, x);
  for (const char* id : {"x1", "x2"}) {
    const auto r = sx.call(open_request(id, info));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->kind_case(), StageResponse::kOpened) << describe(r);
  }
  // Another stream of the same identity counts against the same quota.
  RawSession sx2(n->address(), a.node_id, x);
  const auto third = sx2.call(open_request("x3", info));
  ASSERT_TRUE(third.has_value());
  ASSERT_EQ(third->kind_case(), StageResponse::kError) << describe(third);
  EXPECT_EQ(third->error().code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third->error().message().find("node:" + x->node_id), std::string::npos)
      << third->error().message();

  RawSession sy(n->address(), a.node_id, y);
  const auto other = sy.call(open_request("y1", info));
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->kind_case(), StageResponse::kOpened) << describe(other);

  // A Close answers nothing; an open sent after it on the same stream is
  // handled after it, and finds the place it freed.
  ASSERT_TRUE(sx.send(close_request("x1")));
  const auto reopened = sx.call(open_request("x3", info));
  ASSERT_TRUE(reopened.has_value());
  EXPECT_EQ(reopened->kind_case(), StageResponse::kOpened) << describe(reopened);
}

// A node with an identity dials only pinned next hops: a Step whose hop has no
// public key is refused (INVALID_ARGUMENT naming the field) and nothing is
// pushed; the session stays usable.
TEST_F(TlsSwarmTest, AnIdentityNodeRefusesAHopWithoutAKey) {
  const KeyFile a = keygen("a");
  const std::string na = node(0, 2, &a);
  const swarm::v1::InfoResponse info = node_info(na, a.node_id);
  RawSession s(na, a.node_id, new_caller());
  const auto opened = s.call(open_request("hop", info));
  ASSERT_TRUE(opened.has_value());
  ASSERT_EQ(opened->kind_case(), StageResponse::kOpened) << describe(opened);

  StageRequest step;
  swarm::v1::Step* st = step.mutable_step();
  st->set_session_id("hop");
  st->set_step_id(1);
  st->add_tokens(1);
  st->set_position(0);
  swarm::v1::Hop* hop = st->add_next_hops();
  hop->set_address("127.0.0.1:9");  // anything: it must not be dialled
  hop->set_first_layer(2);
  hop->set_last_layer(info.n_layer());
  const auto refused = s.call(step);
  ASSERT_TRUE(refused.has_value());
  ASSERT_EQ(refused->kind_case(), StageResponse::kError) << describe(refused);
  EXPECT_EQ(refused->error().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused->error().message().find("Step.next_hops.public_key"), std::string::npos)
      << refused->error().message();
  EXPECT_EQ(read_file(node_log(0)).find("127.0.0.1:9 is unreachable"), std::string::npos);

  // Without the hop the same step runs here and answers with its hidden state.
  st->clear_next_hops();
  const auto ran = s.call(step);
  ASSERT_TRUE(ran.has_value());
  EXPECT_EQ(ran->kind_case(), StageResponse::kResult) << describe(ran);
}

// --allow is checked before the model loads: without --identity (a plaintext
// node knows no caller), or naming neither ids nor a readable file, the node
// does not start and says which flag is wrong.
TEST_F(TlsSwarmTest, AllowFlagsAreCheckedAtStart) {
  const KeyFile a = keygen("a");
  const std::string base = "node -m " + model_ + " --listen 127.0.0.1:0 ";
  auto r = run_swarm(base + "--allow " + a.node_id);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("need --identity"), std::string::npos) << r.out;
  r = run_swarm(base + "--allow-anonymous");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("need --identity"), std::string::npos) << r.out;
  for (const std::string& bad : {dir_ + "/missing.txt", a.node_id + ",xyz"}) {
    r = run_swarm(base + "--identity " + shell_quote(a.path) + " --allow " + shell_quote(bad));
    EXPECT_NE(r.code, 0) << bad;
    EXPECT_NE(r.out.find("--allow: "), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("listening on"), std::string::npos) << r.out;
  }
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
