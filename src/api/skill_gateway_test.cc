// The gateway's skill routing end to end in one process: a SkillGateway
// answering through real skill proxies (api/skill_proxy.h) in front of
// hand-made upstreams (no image model runs on a test machine): image requests
// pass through priced per image over HTTPS pinned to each record's key, and a
// provider that cannot be reached, answers 5xx or holds another key is left
// for the next at once.
#include "api/skill_gateway.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <thread>

#include "api/http_tls.h"
#include "api/skill_proxy.h"
#include "api/test_upstream.h"
#include "net/test_identity.h"

namespace swarm {
namespace {

using json = nlohmann::json;
using testing::TestUpstream;

// An upstream that draws "images": one entry per image asked for.
std::unique_ptr<TestUpstream> image_server(int* calls) {
  return std::make_unique<TestUpstream>([calls](httplib::Server& s, testing::Gate&) {
    s.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"painter","object":"model"}]})",
                      "application/json");
    });
    s.Post("/v1/images/generations", [calls](const httplib::Request& req, httplib::Response& res) {
      ++*calls;
      const json body = json::parse(req.body);
      json data = json::array();
      for (int i = 0; i < body.value("n", 1); ++i) data.push_back({{"b64_json", "aGVsbG8="}});
      res.set_content(json({{"created", 1}, {"data", data}}).dump(), "application/json");
    });
  });
}

// A skill proxy in front of `port`, serving HTTPS as `who`: its own port.
std::unique_ptr<SkillProxy> proxy_for(int port, int* proxy_port, const net::Identity& who) {
  SkillProxyOptions o;
  o.upstream = UpstreamUrl{"127.0.0.1", port, ""};
  auto tls = TlsServerContext::ForIdentity(who);
  EXPECT_TRUE(tls.ok()) << tls.status().ToString();
  o.tls = *tls;
  auto p = SkillProxy::Create(o);
  EXPECT_TRUE(p.ok());
  auto bound = (*p)->listen("127.0.0.1", 0);
  EXPECT_TRUE(bound.ok());
  *proxy_port = *bound;
  return std::move(p).value();
}

// A record as `who` would sign it (the gateway pins its key).
discovery::SkillRecord image_record(const std::string& node_id, int port, double price,
                                    const net::Identity& who) {
  discovery::SkillRecord r;
  r.node_id = node_id;
  r.public_key = who.public_key();
  r.addresses = {"127.0.0.1:" + std::to_string(port)};
  r.skill = "painter";
  r.tasks = {"images"};
  r.price_per_image = price;
  r.capacity = 2;
  r.warm = true;
  return r;
}

// An HTTP server whose image route is the gateway's skill routing.
struct GatewayFront {
  explicit GatewayFront(SkillGateway& gw) {
    server.Post("/v1/images/generations", [&gw](const httplib::Request& req, httplib::Response& res) {
      gw.handle(req, res, discovery::kTaskImages, json::parse(req.body));
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::yield();
  }
  ~GatewayFront() {
    server.stop();
    thread.join();
  }
  httplib::Server server;
  int port = 0;
  std::thread thread;
};

TEST(SkillGatewayTest, ImagesPassThroughPricedPerImage) {
  int calls = 0, proxy_port = 0;
  const net::Identity a = net::identity_from(1);
  auto upstream = image_server(&calls);
  auto proxy = proxy_for(upstream->port(), &proxy_port, a);
  SkillGatewayOptions o;
  o.seed = 1;
  SkillGateway gw(o);
  gw.set_records({image_record("aaaa", proxy_port, 0.5, a)});
  ASSERT_TRUE(gw.serves("painter"));
  GatewayFront front(gw);
  httplib::Client c("127.0.0.1", front.port);
  auto res = c.Post("/v1/images/generations",
                    R"({"model":"painter","prompt":"a lighthouse","n":3})", "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json got = json::parse(res->body);
  EXPECT_EQ(got["data"].size(), 3u);
  EXPECT_EQ(got["usage"]["images"], 3);
  EXPECT_EQ(got["usage"]["swarm"]["provider"], "aaaa");
  EXPECT_DOUBLE_EQ(got["usage"]["swarm"]["cost"].get<double>(), 1.5);
  EXPECT_EQ(res->get_header_value("X-Swarm-Provider"), "aaaa");
  EXPECT_EQ(calls, 1);
  // A cap under the price: nobody may serve it.
  res = c.Post("/v1/images/generations",
               R"({"model":"painter","prompt":"x","max_price":0.1})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("skill_unavailable"), std::string::npos);
  EXPECT_EQ(calls, 1);
}

TEST(SkillGatewayTest, AnUnreachableOrFailingProviderIsLeftForTheNext) {
  int calls = 0, good_port = 0, failing_port = 0, imposter_port = 0;
  const net::Identity good_id = net::identity_from(1), failing_id = net::identity_from(2), other = net::identity_from(3);
  auto upstream = image_server(&calls);
  auto good = proxy_for(upstream->port(), &good_port, good_id);
  // A proxy whose upstream is gone answers 502; a port nobody listens on refuses.
  testing::RefusingPort gone, refusing;
  auto failing = proxy_for(gone.port(), &failing_port, failing_id);
  // A working provider, but not the one the record's key names: refused at
  // the TLS handshake, never asked anything.
  auto imposter = proxy_for(upstream->port(), &imposter_port, other);
  SkillGatewayOptions o;
  o.seed = 1;
  o.explore = 0;
  SkillGateway gw(o);
  // The broken ones are the cheapest, so they are tried first.
  gw.set_records({image_record("bad1", refusing.port(), 0.01, good_id),
                  image_record("bad2", failing_port, 0.02, failing_id),
                  image_record("bad3", imposter_port, 0.03, good_id),
                  image_record("good", good_port, 1, good_id)});
  GatewayFront front(gw);
  httplib::Client c("127.0.0.1", front.port);
  auto res = c.Post("/v1/images/generations", R"({"model":"painter","prompt":"x"})",
                    "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json got = json::parse(res->body);
  EXPECT_EQ(got["usage"]["swarm"]["provider"], "good");
  EXPECT_EQ(got["usage"]["swarm"]["failovers"], 3);
  EXPECT_EQ(calls, 1);  // the imposter's upstream was never reached
  // And the pinned handshake's refusal names itself.
  UpstreamRequest up;
  up.host = "127.0.0.1";
  up.port = imposter_port;
  up.method = "GET";
  up.path = "/health";
  up.pin = good_id.public_key();
  auto call = UpstreamCall::Start(up);
  EXPECT_EQ(call->wait_for_status(), 0);
  EXPECT_NE(call->error().find("does not hold the pinned key"), std::string::npos) << call->error();
  up.pin = other.public_key();  // the imposter's own key: it is who it says, and answers
  call = UpstreamCall::Start(up);
  EXPECT_GT(call->wait_for_status(), 0) << call->error();
  // The gateway remembers: both failures count against them now.
  for (const SkillProviderView& v : gw.providers())
    EXPECT_EQ(v.seen.recent_failures > 0, v.node_id != "good") << v.node_id;
}

}  // namespace
}  // namespace swarm
