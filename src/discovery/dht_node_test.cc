// The DHT transport with real OpenDHT nodes on 127.0.0.1: a record announced by
// one node is found by another; a forged record, an expired one, a record of
// another model and a node's older records are dropped and counted; a
// withdrawal hides the node. No mocks: three DhtNodes in this process talk UDP.
#include "discovery/dht_node.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "discovery/announcer.h"
#include "engine/test_process.h"
#include "net/test_identity.h"

namespace swarm::discovery {
namespace {

using net::identity_from;

const std::string kModel = "m0del-1d";

NodeRecord record(int begin, int end, int64_t issued, int64_t lifetime) {
  NodeRecord r;
  r.addresses = {"127.0.0.1:7001"};
  r.model_id = kModel;
  r.layer_begin = begin;
  r.layer_end = end;
  r.throughput = 500;
  r.issued_at = issued;
  r.expires_at = issued + lifetime;
  return r;
}

class DhtNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto boot = DhtNode::Start({});
    ASSERT_TRUE(boot.ok()) << boot.status().ToString();
    boot_ = std::move(*boot);
    for (auto* n : {&writer_, &reader_}) {
      auto node = DhtNode::Start({"127.0.0.1:0", {boot_->address()}});
      ASSERT_TRUE(node.ok()) << node.status().ToString();
      *n = std::move(*node);
    }
    ASSERT_TRUE(swarm::testing::eventually(
        [&] { return writer_->connected() && reader_->connected(); }, std::chrono::seconds(30)));
  }

  // Waits until the reader's look-up has seen `n` values under the model key.
  RecordLookup lookup_after(size_t n_values, int64_t now) {
    RecordLookup got;
    EXPECT_TRUE(swarm::testing::eventually(
        [&] {
          auto l = reader_->find_nodes(kModel, now);
          if (!l.ok()) return false;
          got = *l;
          return got.records.size() + got.rejected.total() >= n_values;
        },
        std::chrono::seconds(30)));
    return got;
  }

  std::unique_ptr<DhtNode> boot_, writer_, reader_;
};

TEST_F(DhtNodeTest, ForgedExpiredAndForeignRecordsAreDroppedAndCounted) {
  const int64_t now = unix_now();
  const net::Identity a = identity_from(1), b = identity_from(2), c = identity_from(3);
  const NodeRecord good = record(0, 2, now, 600);
  ASSERT_TRUE(writer_->announce(good, sign_record(good, a)).ok());
  // b's record with its layers changed after signing: the signature no longer holds.
  nlohmann::json forged = nlohmann::json::parse(sign_record(record(2, 4, now, 600), b));
  forged["layer_end"] = 3;
  ASSERT_TRUE(writer_->put(model_key(kModel), forged.dump()).ok());
  // c's record, correctly signed but expired a minute ago.
  const NodeRecord expired = record(2, 4, now - 660, 600);
  ASSERT_TRUE(writer_->announce(expired, sign_record(expired, c)).ok());
  // A valid record of another model, stored under this model's key.
  NodeRecord foreign = record(0, 4, now, 600);
  foreign.model_id = "another-model";
  ASSERT_TRUE(writer_->put(model_key(kModel), sign_record(foreign, c)).ok());
  ASSERT_TRUE(writer_->put(model_key(kModel), "not json at all").ok());

  const RecordLookup l = lookup_after(5, now);
  ASSERT_EQ(l.records.size(), 1u);
  EXPECT_EQ(l.records[0].node_id, a.node_id());
  EXPECT_EQ(l.records[0].layer_end, 2);
  EXPECT_EQ(l.rejected.corrupt, 2u);  // forged signature, garbage
  EXPECT_EQ(l.rejected.invalid, 1u);  // expired
  EXPECT_EQ(l.rejected.other_model, 1u);
}

TEST_F(DhtNodeTest, ANodesNewestRecordWinsAndAWithdrawalHidesIt) {
  const net::Identity a = identity_from(1);
  int begin = 0;
  Announcer announcer(
      *writer_, a, [&] { return record(begin, begin + 2, 0, 0); }, std::chrono::seconds(60));
  ASSERT_TRUE(announcer.first_status().ok()) << announcer.first_status().ToString();
  begin = 2;  // the node moved
  ASSERT_TRUE(announcer.announce_now().ok());
  RecordLookup l = lookup_after(2, unix_now());
  ASSERT_EQ(l.records.size(), 1u);
  EXPECT_EQ(l.records[0].layer_begin, 2) << "the older record won";
  EXPECT_EQ(l.rejected.superseded, 1u);

  ASSERT_TRUE(announcer.withdraw().ok());
  // The withdrawal expires a second after it is issued (at most a few seconds
  // from now, as issue times only increase); from then on a reader
  // sees no record of the node (its older ones are superseded, not revived).
  l = lookup_after(3, unix_now() + 10);
  EXPECT_TRUE(l.records.empty()) << l.records.size();
  EXPECT_EQ(l.rejected.invalid, 1u);
  // Read at the withdrawal's own second, it is the node's record: still newest.
  l = lookup_after(3, unix_now());
  EXPECT_EQ(l.rejected.superseded, 2u);
}

TEST_F(DhtNodeTest, ModelAnnouncementsAreListedOncePerModel) {
  ASSERT_TRUE(writer_->announce_model({kModel, 4, "tiny"}).ok());
  ASSERT_TRUE(reader_->announce_model({kModel, 4, "tiny"}).ok());
  ASSERT_TRUE(writer_->put(std::string(kModelsKey), "{\"model_id\": 5}").ok());
  std::vector<ModelAnnouncement> models;
  ASSERT_TRUE(swarm::testing::eventually([&] {
    auto m = reader_->find_models();
    if (m.ok()) models = *m;
    return m.ok() && !models.empty();
  }));
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0], (ModelAnnouncement{kModel, 4, "tiny"}));
}

// A node started while its bootstrap peer is down joins once the peer is up
// (OpenDHT keeps asking its bootstrap peers while it knows no other): so nodes
// and the bootstrap peer may start in any order.
TEST(DhtNodeStartTest, ABootstrapPeerThatComesUpLaterIsJoined) {
  auto probe = DhtNode::Start({});
  ASSERT_TRUE(probe.ok());
  const std::string boot_address = probe.value()->address();
  probe.value().reset();  // the port is free again: nobody answers there
  auto late = DhtNode::Start({"127.0.0.1:0", {boot_address}});
  ASSERT_TRUE(late.ok());
  EXPECT_FALSE(late.value()->put("k", "v", std::chrono::milliseconds(300)).ok());
  auto boot = DhtNode::Start({boot_address, {}});
  ASSERT_TRUE(boot.ok()) << boot.status().ToString();
  EXPECT_TRUE(swarm::testing::eventually(
      [&] { return late.value()->put("k", "v", std::chrono::seconds(2)).ok(); },
      std::chrono::seconds(30)));
}

TEST(DhtNodeStartTest, BadAddressesAreRefusedByName) {
  auto r = DhtNode::Start({"localhost:x", {}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("localhost:x"), std::string::npos) << r.status().ToString();
  for (const char* bad : {"127.0.0.1:0", "localhost", "localhost:99999"}) {
    r = DhtNode::Start({"127.0.0.1:0", {bad}});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("bootstrap"), std::string::npos) << r.status().ToString();
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status().ToString();
  }
  // A name is looked up.
  auto boot = DhtNode::Start({});
  ASSERT_TRUE(boot.ok());
  const std::string port = boot.value()->address().substr(boot.value()->address().rfind(':') + 1);
  auto named = DhtNode::Start({"127.0.0.1:0", {"localhost:" + port}});
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  EXPECT_TRUE(swarm::testing::eventually([&] { return named.value()->connected(); },
                                         std::chrono::seconds(30)));
}

}  // namespace
}  // namespace swarm::discovery
