// A node's /metrics: one small plain-HTTP server (cpp-httplib) that answers
// GET /metrics in Prometheus' text format and nothing else
// (`swarm node --metrics-listen HOST:PORT`, doc/metrics.md).
#pragma once

#include <httplib.h>

#include <functional>
#include <string>
#include <thread>

#include "api/metric_families.h"
#include "engine/status.h"

namespace swarm::cli {

class MetricsListener {
 public:
  // `collect` is called on the server's threads, once per scrape.
  explicit MetricsListener(std::function<MetricFamilies()> collect);
  ~MetricsListener();  // stops
  MetricsListener(const MetricsListener&) = delete;
  MetricsListener& operator=(const MetricsListener&) = delete;

  // Binds host:port (port 0: a free one) and serves on a background thread;
  // the bound port, or IOError.
  Result<int> start(const std::string& host, int port);

 private:
  httplib::Server server_;
  std::thread thread_;
};

}  // namespace swarm::cli
