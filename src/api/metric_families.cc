#include "api/metric_families.h"

#include <prometheus/text_serializer.h>

#include <limits>
#include <sstream>

namespace swarm {

prometheus::ClientMetric& MetricSnapshot::add(const std::string& name, const std::string& help,
                                              prometheus::MetricType type,
                                              const MetricLabels& labels) {
  prometheus::MetricFamily* family = nullptr;
  for (prometheus::MetricFamily& f : families_)
    if (f.name == name) family = &f;
  if (family == nullptr) {
    families_.push_back({name, help, type, {}});
    family = &families_.back();
  }
  prometheus::ClientMetric& m = family->metric.emplace_back();
  for (const auto& [k, v] : labels) m.label.push_back({k, v});
  return m;
}

MetricSnapshot& MetricSnapshot::counter(const std::string& name, const std::string& help,
                                        double value, const MetricLabels& labels) {
  add(name, help, prometheus::MetricType::Counter, labels).counter.value = value;
  return *this;
}

MetricSnapshot& MetricSnapshot::gauge(const std::string& name, const std::string& help,
                                      double value, const MetricLabels& labels) {
  add(name, help, prometheus::MetricType::Gauge, labels).gauge.value = value;
  return *this;
}

MetricSnapshot& MetricSnapshot::histogram(const std::string& name, const std::string& help,
                                          const std::vector<double>& bounds,
                                          const std::vector<uint64_t>& counts, double sum,
                                          const MetricLabels& labels) {
  prometheus::ClientMetric::Histogram& h =
      add(name, help, prometheus::MetricType::Histogram, labels).histogram;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += i < counts.size() ? counts[i] : 0;
    h.bucket.push_back({cumulative, bounds[i]});
  }
  if (counts.size() > bounds.size()) cumulative += counts[bounds.size()];
  h.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  h.sample_count = cumulative;
  h.sample_sum = sum;
  return *this;
}

std::string metrics_text(const MetricFamilies& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace swarm
