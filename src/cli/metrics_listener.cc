#include "cli/metrics_listener.h"

namespace swarm::cli {

MetricsListener::MetricsListener(std::function<MetricFamilies()> collect) {
  // Scrapes come every few seconds from a handful of scrapers, not from the public.
  server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
  server_.Get("/metrics", [collect](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(collect()), kMetricsContentType);
  });
}

MetricsListener::~MetricsListener() {
  server_.stop();
  if (thread_.joinable()) thread_.join();
}

Result<int> MetricsListener::start(const std::string& host, int port) {
  int bound = -1;
  if (port == 0)
    bound = server_.bind_to_any_port(host);
  else if (server_.bind_to_port(host, port))
    bound = port;
  if (bound <= 0)
    return Status::IOError("--metrics-listen: cannot listen on " + host + ":" +
                           std::to_string(port));
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  return bound;
}

}  // namespace swarm::cli
