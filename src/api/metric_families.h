// Figures that already live elsewhere (a node's Info, the auditor's stats, the
// HTTP front door's counters) are read when /metrics is scraped and turned into
// Prometheus metric families here, beside those prometheus-cpp's registry
// keeps; the whole is written in Prometheus' text format 0.0.4 (doc/metrics.md).
#pragma once

#include <prometheus/metric_family.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace swarm {

using MetricFamilies = std::vector<prometheus::MetricFamily>;
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// The Content-Type of the text format: what Prometheus expects from a scrape.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Builds families from values read at scrape time. A name is added once; the
// samples of one family (label sets) follow it.
class MetricSnapshot {
 public:
  // A counter's name ends in _total (Prometheus' convention; the text format
  // writes names as given).
  MetricSnapshot& counter(const std::string& name, const std::string& help, double value,
                          const MetricLabels& labels = {});
  MetricSnapshot& gauge(const std::string& name, const std::string& help, double value,
                        const MetricLabels& labels = {});
  // `bounds`: the buckets' upper bounds, increasing (+Inf is implied);
  // `counts`: observations per bucket, not cumulative, bounds.size() + 1 of
  // them (the last one above every bound).
  MetricSnapshot& histogram(const std::string& name, const std::string& help,
                            const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                            double sum, const MetricLabels& labels = {});

  MetricFamilies take() { return std::move(families_); }

 private:
  prometheus::ClientMetric& add(const std::string& name, const std::string& help,
                                prometheus::MetricType type, const MetricLabels& labels);
  MetricFamilies families_;
};

// The text exposition format 0.0.4 of all `families` (HELP and TYPE lines,
// escaped label values, _bucket/_sum/_count for histograms).
std::string metrics_text(const MetricFamilies& families);

}  // namespace swarm
