// What `swarm node`, `swarm gateway`, `swarm status` and `swarm dht` share about
// the DHT: starting a DHT node from --bootstrap / --dht-listen, and turning the
// records it reads into what routing and the gateway take.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "discovery/dht_node.h"
#include "engine/model_source.h"
#include "net/peer_address.h"
#include "routing/chain.h"
#include "routing/layer_assignment.h"

namespace swarm::cli {

// "a,b,,c" -> {"a", "b", "c"}.
std::vector<std::string> split_list(const std::string& s);

// Starts a DHT node bound to `listen` (HOST:PORT; empty: port 0 on 127.0.0.1
// when every bootstrap peer is on loopback, else on 0.0.0.0) and joins through
// `bootstrap_csv` (HOST:PORT,...). Ends the command with a message naming the
// flag on bad input. `flag` names the listen option for messages.
std::unique_ptr<discovery::DhtNode> start_dht(const std::string& listen,
                                              const std::string& bootstrap_csv,
                                              const std::string& flag = "--dht-listen");

// Waits up to `limit` until a DHT peer answered; false (and a warning) if none did.
bool wait_for_dht(discovery::DhtNode& dht, std::chrono::milliseconds limit);

// A record as route choice and layer assignment see a peer (first address).
std::vector<PeerSnapshot> peer_snapshots(const std::vector<discovery::NodeRecord>& records,
                                         int n_layer);
// Each record's addresses (in record order: a gateway tries them in turn) and
// announced layers, pinned to the record's public key: the node's TLS
// certificate must hold the key that signed its record.
std::vector<net::PeerAddress> pinned_peers(const std::vector<discovery::NodeRecord>& records);

// Layers a node with `memory_bytes` for weights can hold: memory over the
// largest layer's bytes (embedding and head, held only by the first and last
// stage, are not counted), at least 1, at most n_layer.
int layers_that_fit(const ModelSource& source, uint64_t memory_bytes);

// What serves one layer: how many nodes, the sum of the layer tokens/s that
// those which measured it report, and how many have not measured yet.
struct LayerService {
  int nodes = 0, unmeasured = 0;
  double measured_layer_tokens_per_second = 0;
  bool operator==(const LayerService&) const = default;
};
// A node serving [first_layer, last_layer) at a reported layer tokens/s (0: not
// measured), as `swarm status` counts it.
struct ServedRange {
  int first_layer = 0, last_layer = 0;
  double layer_tokens_per_second = 0;
};
// Per layer of [0, n_layer); ranges are clipped to it.
std::vector<LayerService> layer_service(const std::vector<ServedRange>& nodes, int n_layer);

// Runs of layers served alike: [first, last) -> service. A run of no nodes is a gap.
struct ThroughputRun {
  LayerRange range;
  LayerService service;
};
std::vector<ThroughputRun> throughput_runs(const std::vector<LayerService>& per_layer);

}  // namespace swarm::cli
