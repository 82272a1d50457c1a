#include "discovery/dht_node.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <opendht.h>

#include <condition_variable>
#include <map>
#include <set>
#include <mutex>
#include <nlohmann/json.hpp>

namespace swarm::discovery {
namespace {

using json = nlohmann::json;

// "A.B.C.D:PORT" -> sockaddr_in; the DHT speaks IPv4 here (loopback in tests).
Result<sockaddr_in> parse_ipv4(const std::string& host_port, bool port_may_be_zero) {
  const size_t colon = host_port.rfind(':');
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  const std::string host = colon == std::string::npos ? "" : host_port.substr(0, colon);
  const std::string port = colon == std::string::npos ? "" : host_port.substr(colon + 1);
  int p = -1;
  if (!port.empty() && port.size() <= 5 &&
      port.find_first_not_of("0123456789") == std::string::npos)
    p = std::stoi(port);
  if (host.empty() || inet_pton(AF_INET, host.c_str(), &sin.sin_addr) != 1 || p < 0 || p > 65535 ||
      (p == 0 && !port_may_be_zero))
    return Status::InvalidArgument("'" + host_port +
                                   "' is not an IPv4 HOST:PORT (e.g. 127.0.0.1:4222)");
  sin.sin_port = htons(static_cast<uint16_t>(p));
  return sin;
}

dht::SockAddr to_sockaddr(const sockaddr_in& sin) {
  return dht::SockAddr(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
}

}  // namespace

std::string model_key(std::string_view model_id) {
  return "swarm.v1/model/" + std::string(model_id);
}

std::string encode_model_announcement(const ModelAnnouncement& a) {
  return json{{"model_id", a.model_id}, {"n_layer", a.n_layer}, {"name", a.name}}.dump();
}

Result<ModelAnnouncement> decode_model_announcement(std::string_view text) {
  const json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("model_id") || !j["model_id"].is_string() ||
      !j.contains("n_layer") || !j["n_layer"].is_number_integer())
    return Status::Corruption(
        "model announcement: not {\"model_id\": string, \"n_layer\": integer}");
  ModelAnnouncement a;
  a.model_id = j["model_id"].get<std::string>();
  const int64_t n = j["n_layer"].get<int64_t>();
  if (a.model_id.empty() || a.model_id.size() > kMaxModelIdLength || n < 1 || n > kMaxLayers)
    return Status::InvalidArgument("model announcement: model_id or n_layer out of range");
  a.n_layer = static_cast<int>(n);
  if (j.contains("name") && j["name"].is_string())
    a.name = j["name"].get<std::string>().substr(0, 256);
  return a;
}

namespace {

// A record that fails at `now` only for its times (expired, or issued ahead):
// verified at its own issue time instead, so it can still supersede a node's
// older records. Anything else yields nothing.
template <class Record, class Parse>
Result<Record> verify_at_issue_time(const std::string& wire, Parse parse) {
  const json j = json::parse(wire, nullptr, false);
  if (!j.is_object() || !j.contains("issued_at") || !j["issued_at"].is_number_integer())
    return Status::Corruption("no issued_at");
  return parse(wire, j["issued_at"].get<int64_t>());
}

// Of `values`, each node's newest authentic record among those `belongs`
// accepts, kept only if it is valid at `now` (select_records' rule, for any
// kind of signed record).
template <class Record, class Parse, class Belongs>
Lookup<Record> select_newest(const std::vector<std::string>& values, int64_t now, Parse parse,
                             Belongs belongs) {
  Lookup<Record> out;
  struct Newest {
    Record record;
    bool valid_now = false;
  };
  std::map<std::string, Newest> newest;  // by node id: its newest authentic record
  size_t usable = 0;                     // valid now and of this model
  for (const std::string& wire : values) {
    Result<Record> r = parse(wire, now);
    const bool valid_now = r.ok();
    if (!valid_now) {
      const Status::Code code = r.status().code();
      if (code == Status::Code::kInvalidArgument) {
        ++out.rejected.invalid;
        r = verify_at_issue_time<Record>(wire, parse);
      } else {
        ++(code == Status::Code::kUnsupported ? out.rejected.unsupported : out.rejected.corrupt);
      }
      if (!r.ok()) continue;
    }
    if (!belongs(*r)) {
      if (valid_now) ++out.rejected.other_model;
      continue;
    }
    if (valid_now) ++usable;
    auto [it, fresh] = newest.try_emplace(r->node_id, Newest{*r, valid_now});
    const Record& have = it->second.record;
    if (!fresh && (r->issued_at > have.issued_at ||
                   (r->issued_at == have.issued_at && r->expires_at < have.expires_at)))
      it->second = Newest{*r, valid_now};
  }
  for (auto& [id, n] : newest)
    if (n.valid_now) out.records.push_back(std::move(n.record));
  out.rejected.superseded = usable - out.records.size();
  return out;
}

}  // namespace

RecordLookup select_records(const std::vector<std::string>& values, const std::string& model_id,
                            int64_t now) {
  return select_newest<NodeRecord>(
      values, now, [](const std::string& w, int64_t t) { return parse_and_verify(w, t); },
      [&model_id](const NodeRecord& r) { return r.model_id == model_id; });
}

SkillLookup select_skill_records(const std::vector<std::string>& values, const std::string& skill,
                                 int64_t now) {
  return select_newest<SkillRecord>(
      values, now, [](const std::string& w, int64_t t) { return parse_and_verify_skill(w, t); },
      [&skill](const SkillRecord& r) { return r.skill == skill; });
}

std::string skill_key(std::string_view skill) { return "swarm.v1/skill/" + std::string(skill); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct DhtNode::Impl {
  dht::DhtRunner runner;
};

DhtNode::DhtNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DhtNode::~DhtNode() { impl_->runner.join(); }

Result<std::unique_ptr<DhtNode>> DhtNode::Start(const DhtOptions& options) {
  auto bind = parse_ipv4(options.listen, true);
  if (!bind.ok()) return bind.status().annotate("DHT listen address");
  std::vector<dht::SockAddr> peers;
  for (const std::string& b : options.bootstrap) {
    // An IPv4 address as is; a name is looked up (its IPv4 addresses).
    auto sin = parse_ipv4(b, false);
    if (sin.ok()) {
      peers.push_back(to_sockaddr(*sin));
      continue;
    }
    const size_t colon = b.rfind(':');
    const std::string port = colon == std::string::npos ? "" : b.substr(colon + 1);
    const bool port_ok = !port.empty() && port.size() <= 5 &&
                         port.find_first_not_of("0123456789") == std::string::npos &&
                         std::stoi(port) >= 1 && std::stoi(port) <= 65535;
    size_t found = 0;
    std::vector<dht::SockAddr> resolved;
    try {
      if (port_ok && colon > 0) resolved = dht::SockAddr::resolve(b.substr(0, colon), port);
    } catch (const std::exception&) {
      // Not found: reported below.
    }
    for (const dht::SockAddr& a : resolved)
      if (a.getFamily() == AF_INET) {
        peers.push_back(a);
        ++found;
      }
    if (found == 0)
      return Status::InvalidArgument("DHT bootstrap: '" + b +
                                     "' is not HOST:PORT with an IPv4 address or a name that "
                                     "resolves to one, and a port 1..65535");
  }
  auto impl = std::make_unique<Impl>();
  dht::DhtRunner::Config config;
  config.dht_config.node_config.network = kDhtNetworkId;
  config.threaded = true;
  config.bind4 = to_sockaddr(*bind);
  try {
    impl->runner.run(config, dht::DhtRunner::Context{});
  } catch (const std::exception& e) {
    return Status::IOError("DHT cannot listen on " + options.listen + ": " + e.what());
  }
  if (impl->runner.getBoundPort() == 0)
    return Status::IOError("DHT cannot listen on " + options.listen);
  if (!peers.empty()) impl->runner.bootstrap(peers);
  return std::unique_ptr<DhtNode>(new DhtNode(std::move(impl)));
}

std::string DhtNode::address() const { return impl_->runner.getBound(AF_INET).toString(); }

bool DhtNode::connected() const { return impl_->runner.getNodesStats(AF_INET).good_nodes > 0; }

namespace {

// A one-shot answer from a DHT callback thread to a waiting caller.
template <typename T>
struct Reply {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  T value{};
  void set(T v) {
    std::lock_guard<std::mutex> lock(mu);
    value = std::move(v);
    done = true;
    cv.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, [&] { return done; });
  }
};

}  // namespace

Status DhtNode::put(const std::string& key, const std::string& value,
                    std::chrono::milliseconds timeout) {
  // Callbacks may fire after we stop waiting: they hold the reply, not us.
  auto reply = std::make_shared<Reply<bool>>();
  impl_->runner.put(dht::InfoHash::get(key),
                    dht::Value(reinterpret_cast<const uint8_t*>(value.data()), value.size()),
                    [reply](bool ok) { reply->set(ok); });
  if (!reply->wait(timeout))
    return Status::DeadlineExceeded("DHT put under " + key + ": no answer within " +
                                    std::to_string(timeout.count()) + " ms");
  std::lock_guard<std::mutex> lock(reply->mu);
  if (!reply->value)
    return Status::Unavailable("DHT put under " + key + ": no DHT node stored it (is the " +
                               "bootstrap peer reachable?)");
  return Status::Ok();
}

Result<std::vector<std::string>> DhtNode::get(const std::string& key,
                                              std::chrono::milliseconds timeout) {
  struct Found {
    std::mutex mu;
    std::vector<std::string> values;
  };
  auto found = std::make_shared<Found>();
  auto reply = std::make_shared<Reply<bool>>();
  impl_->runner.get(
      dht::InfoHash::get(key),
      [found](const std::vector<std::shared_ptr<dht::Value>>& values) {
        std::lock_guard<std::mutex> lock(found->mu);
        for (const auto& v : values) found->values.emplace_back(v->data.begin(), v->data.end());
        return true;
      },
      [reply](bool ok) { reply->set(ok); });
  const bool ended = reply->wait(timeout);
  std::lock_guard<std::mutex> lock(found->mu);
  if (!ended && found->values.empty())
    return Status::DeadlineExceeded("DHT get under " + key + ": nothing within " +
                                    std::to_string(timeout.count()) + " ms");
  return found->values;
}

Status DhtNode::announce(const NodeRecord& record, const std::string& wire) {
  return put(model_key(record.model_id), wire);
}

Result<RecordLookup> DhtNode::find_nodes(const std::string& model_id, int64_t now) {
  auto values = get(model_key(model_id));
  if (!values.ok()) return values.status();
  return select_records(*values, model_id, now);
}

Status DhtNode::announce_skill(const SkillRecord& record, const std::string& wire) {
  SWARM_RETURN_IF_ERROR(put(skill_key(record.skill), wire));
  return put(std::string(kSkillsKey), json{{"skill", record.skill}}.dump());
}

Result<SkillLookup> DhtNode::find_skill(const std::string& skill, int64_t now) {
  auto values = get(skill_key(skill));
  if (!values.ok()) return values.status();
  return select_skill_records(*values, skill, now);
}

Result<std::vector<std::string>> DhtNode::find_skill_names(size_t max_names) {
  auto values = get(std::string(kSkillsKey));
  if (!values.ok()) return values.status();
  std::set<std::string> names;
  for (const std::string& v : *values) {
    const json j = json::parse(v, nullptr, false);
    if (!j.is_object() || !j.contains("skill") || !j["skill"].is_string()) continue;
    const std::string name = j["skill"].get<std::string>();
    if (!validate_skill_name(name).ok()) continue;
    names.insert(name);
    if (names.size() >= max_names) break;
  }
  return std::vector<std::string>(names.begin(), names.end());
}

Status DhtNode::announce_model(const ModelAnnouncement& model) {
  return put(std::string(kModelsKey), encode_model_announcement(model));
}

Result<std::vector<ModelAnnouncement>> DhtNode::find_models() {
  auto values = get(std::string(kModelsKey));
  if (!values.ok()) return values.status();
  std::map<std::string, ModelAnnouncement> by_id;
  for (const std::string& v : *values) {
    auto a = decode_model_announcement(v);
    if (!a.ok()) continue;
    auto [it, fresh] = by_id.try_emplace(a->model_id, *a);
    if (!fresh && a->n_layer > it->second.n_layer) it->second = *a;
  }
  std::vector<ModelAnnouncement> out;
  for (auto& [id, a] : by_id) out.push_back(std::move(a));
  return out;
}

}  // namespace swarm::discovery
