// Signed skill records: a provider's record reads back unchanged; one that is
// forged, altered, of another kind, absurd or outside its time window is
// refused with its reason named; a reader keeps each provider's newest record
// of the skill it asked for.
#include "discovery/skill_record.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "discovery/dht_node.h"
#include "net/test_identity.h"

namespace swarm::discovery {
namespace {

using net::identity_from;

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'000;

SkillRecord sample() {
  SkillRecord r;
  r.addresses = {"127.0.0.1:8080", "provider.example.org:443"};
  r.skill = "kjv-target";
  r.tasks = {"chat", "completions", "embeddings"};
  r.content_id = "3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e";
  r.engine = true;
  r.price_per_1k = 0.25;
  r.price_per_image = 0;
  r.capacity = 8;
  r.active = 3;
  r.queued = 1;
  r.tokens_per_second = 41.5;
  r.ttft_seconds = 0.12;
  r.warm = true;
  r.recent_failures = 2;
  r.issued_at = kNow - 10;
  r.expires_at = kNow + 600;
  return r;
}

std::string reason(const Result<SkillRecord>& r) {
  return r.ok() ? "(accepted)" : r.status().ToString();
}

TEST(SkillRecordTest, SignedRecordReadsBackUnchanged) {
  const net::Identity a = identity_from(1);
  SkillRecord r = sample();
  auto back = parse_and_verify_skill(sign_skill_record(r, a), kNow);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  r.node_id = a.node_id();
  r.public_key = a.public_key();
  EXPECT_EQ(*back, r);
}

TEST(SkillRecordTest, AlteredOrForgedRecordsAreRefused) {
  const net::Identity a = identity_from(1), b = identity_from(2);
  const std::string wire = sign_skill_record(sample(), a);
  auto edit = [&](auto change) {
    json j = json::parse(wire);
    change(j);
    return parse_and_verify_skill(j.dump(), kNow);
  };
  // A provider cannot lower its announced price or load after signing.
  EXPECT_NE(reason(edit([](json& j) { j["price_per_1k"] = 0.01; })).find("bad signature"),
            std::string::npos);
  EXPECT_NE(reason(edit([](json& j) { j["queued"] = 0; })).find("bad signature"),
            std::string::npos);
  // Another node's key with this node's id.
  EXPECT_NE(reason(edit([&](json& j) {
              j["public_key"] = net::to_hex(b.public_key().data(), b.public_key().size());
            })).find("is not the public key's"),
            std::string::npos);
  EXPECT_NE(reason(edit([](json& j) { j["extra"] = 1; })).find("unknown field"),
            std::string::npos);
  EXPECT_NE(reason(edit([](json& j) { j.erase("warm"); })).find("missing field warm"),
            std::string::npos);
  EXPECT_NE(reason(edit([](json& j) { j["engine"] = 1; })).find("engine is not a boolean"),
            std::string::npos);
  EXPECT_EQ(edit([](json& j) { j["protocol"] = "swarm.v9"; }).status().code(),
            Status::Code::kUnsupported);
}

TEST(SkillRecordTest, ANodeRecordsSignatureDoesNotPassForASkillRecord) {
  // The signing contexts differ, so no bytes one kind signs verify as the other.
  const net::Identity a = identity_from(1);
  NodeRecord n;
  n.addresses = {"127.0.0.1:8080"};
  n.model_id = "m";
  n.layer_begin = 0;
  n.layer_end = 1;
  n.issued_at = kNow - 10;
  n.expires_at = kNow + 600;
  SkillRecord s = sample();
  s.node_id = a.node_id();
  s.public_key = a.public_key();
  EXPECT_NE(canonical_bytes(s).substr(0, 40), canonical_bytes(n).substr(0, 40));
  const std::string wire = sign_skill_record(s, a);
  json j = json::parse(wire);
  j["signature"] = json::parse(sign_record(n, a))["signature"];
  EXPECT_NE(reason(parse_and_verify_skill(j.dump(), kNow)).find("bad signature"),
            std::string::npos);
}

TEST(SkillRecordTest, AbsurdValuesAreNamed) {
  auto refused = [](auto change) {
    SkillRecord r = sample();
    change(r);
    return validate_skill_record(r, kNow).ToString();
  };
  EXPECT_NE(refused([](SkillRecord& r) { r.capacity = 0; }).find("capacity 0"), std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.tasks = {"chat", "chat"}; }).find("listed twice"),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.tasks = {"video"}; }).find("unknown task \"video\""),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.tasks.clear(); }).find("tasks must list"),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.skill = "a b"; }).find("character outside"),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.skill = ""; }).find("skill name must be"),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.price_per_1k = -1; }).find("price"), std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.tokens_per_second = 1.0 / 0.0; })
                .find("tokens_per_second"),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.addresses = {"nohost"}; }).find("is not host:port"),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.expires_at = kNow; }).find("expired"),
            std::string::npos);
  EXPECT_NE(refused([](SkillRecord& r) { r.expires_at = r.issued_at + 7200; }).find("lifetime"),
            std::string::npos);
  EXPECT_TRUE(validate_skill_name("Qwen/Qwen2.5-7B-Instruct:q4@v1+x").ok());
}

TEST(SkillRecordTest, ReadersKeepEachProvidersNewestRecordOfTheSkillAsked) {
  const net::Identity a = identity_from(1), b = identity_from(2);
  SkillRecord old_a = sample(), new_a = sample(), other = sample(), b_rec = sample();
  old_a.price_per_1k = 1;
  new_a.price_per_1k = 2;
  new_a.issued_at = old_a.issued_at + 5;
  other.skill = "another-model";
  b_rec.price_per_1k = 3;
  const std::vector<std::string> values = {sign_skill_record(old_a, a), sign_skill_record(new_a, a),
                                           sign_skill_record(other, a), sign_skill_record(b_rec, b),
                                           "not json"};
  SkillLookup found = select_skill_records(values, "kjv-target", kNow);
  ASSERT_EQ(found.records.size(), 2u);
  for (const SkillRecord& r : found.records)
    EXPECT_EQ(r.price_per_1k, r.node_id == a.node_id() ? 2 : 3);
  EXPECT_EQ(found.rejected.superseded, 1u);
  EXPECT_EQ(found.rejected.other_model, 1u);
  EXPECT_EQ(found.rejected.corrupt, 1u);
}

TEST(SkillRecordTest, TasksMapToTheirRoutes) {
  EXPECT_EQ(route_of_task(kTaskChat), "/v1/chat/completions");
  EXPECT_EQ(route_of_task(kTaskCompletions), "/v1/completions");
  EXPECT_EQ(route_of_task(kTaskEmbeddings), "/v1/embeddings");
  EXPECT_EQ(route_of_task(kTaskImages), "/v1/images/generations");
  EXPECT_EQ(route_of_task("video"), "");
}

}  // namespace
}  // namespace swarm::discovery
