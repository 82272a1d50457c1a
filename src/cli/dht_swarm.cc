#include "cli/dht_swarm.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "cli/common.h"
#include "engine/tensor_types.h"

namespace swarm::cli {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::unique_ptr<discovery::DhtNode> start_dht(const std::string& listen,
                                              const std::string& bootstrap_csv,
                                              const std::string& flag) {
  discovery::DhtOptions o;
  o.bootstrap = split_list(bootstrap_csv);
  for (const std::string& b : o.bootstrap) {
    auto hp = parse_host_port(b);
    if (!hp.ok() || hp->second == 0)
      fail("--bootstrap: '" + b + "' is not HOST:PORT with a port 1..65535");
  }
  if (!listen.empty()) {
    o.listen = listen;
  } else {
    const bool loopback = std::all_of(o.bootstrap.begin(), o.bootstrap.end(),
                                      [](const std::string& b) { return b.rfind("127.", 0) == 0; });
    o.listen = loopback ? "127.0.0.1:0" : "0.0.0.0:0";
  }
  auto dht = discovery::DhtNode::Start(o);
  if (!dht.ok()) {
    const bool bad_bootstrap = dht.status().message().find("bootstrap") != std::string::npos;
    fail((bad_bootstrap ? std::string("--bootstrap: ") : flag + ": ") + dht.status().message());
  }
  return std::move(dht).value();
}

bool wait_for_dht(discovery::DhtNode& dht, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!dht.connected()) {
    if (std::chrono::steady_clock::now() >= end) {
      spdlog::warn("no DHT peer answered within {} ms; going on alone", limit.count());
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::vector<PeerSnapshot> peer_snapshots(const std::vector<discovery::NodeRecord>& records,
                                         int n_layer) {
  std::vector<PeerSnapshot> out;
  for (const discovery::NodeRecord& r : records) {
    PeerSnapshot p;
    p.address = r.addresses.front();
    p.model_id = r.model_id;
    p.first_layer = r.layer_begin;
    p.last_layer = r.layer_end;
    p.n_layer = n_layer;
    p.layer_tokens_per_second = r.throughput;
    p.public_key = net::to_hex(r.public_key.data(), r.public_key.size());
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<net::PeerAddress> pinned_peers(const std::vector<discovery::NodeRecord>& records) {
  std::vector<net::PeerAddress> out;
  for (const discovery::NodeRecord& r : records) {
    net::PeerAddress p;
    p.address = r.addresses.front();
    p.more_addresses.assign(r.addresses.begin() + 1, r.addresses.end());
    p.pin = net::to_hex(r.public_key.data(), r.public_key.size());
    p.announced_first = r.layer_begin;
    p.announced_last = r.layer_end;
    out.push_back(std::move(p));
  }
  return out;
}

int layers_that_fit(const ModelSource& source, uint64_t memory_bytes) {
  const int n_layer = source.config.n_layer;
  std::map<int, uint64_t> bytes;  // by layer
  for (const TensorInfo& t : source.tensors) {
    int layer = -1;
    for (const char* prefix : {"blk.", "model.layers."})
      if (t.name.rfind(prefix, 0) == 0) layer = std::atoi(t.name.c_str() + std::strlen(prefix));
    if (layer >= 0) bytes[layer] += t.nbytes;
  }
  uint64_t largest = 1;
  for (const auto& [l, b] : bytes) largest = std::max(largest, b);
  const uint64_t fit = memory_bytes / largest;
  return static_cast<int>(
      std::clamp<uint64_t>(fit, 1, static_cast<uint64_t>(std::max(n_layer, 1))));
}

std::vector<LayerService> layer_service(const std::vector<ServedRange>& nodes, int n_layer) {
  std::vector<LayerService> out(static_cast<size_t>(std::max(n_layer, 0)));
  for (const ServedRange& n : nodes)
    for (int l = std::max(n.first_layer, 0); l < std::min(n.last_layer, n_layer); ++l) {
      LayerService& s = out[static_cast<size_t>(l)];
      ++s.nodes;
      if (n.layer_tokens_per_second > 0)
        s.measured_layer_tokens_per_second += n.layer_tokens_per_second;
      else
        ++s.unmeasured;
    }
  return out;
}

std::vector<ThroughputRun> throughput_runs(const std::vector<LayerService>& per_layer) {
  std::vector<ThroughputRun> runs;
  for (size_t l = 0; l < per_layer.size(); ++l) {
    const int i = static_cast<int>(l);
    if (!runs.empty() && runs.back().service == per_layer[l])
      runs.back().range.last = i + 1;
    else
      runs.push_back({{i, i + 1}, per_layer[l]});
  }
  return runs;
}

}  // namespace swarm::cli
