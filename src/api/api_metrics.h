// What the OpenAI API counts for GET /metrics (doc/metrics.md): requests by
// endpoint and status, tokens in and out, time to first token and per-token
// latency, requests in flight, speculation, how completions ended. Kept in
// prometheus-cpp's registry: counting is a few atomic adds, safe from every
// HTTP and generation thread at once.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>
#include <utility>
#include <vector>

#include "api/metric_families.h"
#include "engine/status.h"
#include "pipeline/generation.h"

namespace swarm {

class ApiMetrics {
 public:
  ApiMetrics();
  ApiMetrics(const ApiMetrics&) = delete;
  ApiMetrics& operator=(const ApiMetrics&) = delete;

  // One HTTP request answered, under its route's pattern (an unknown path
  // counts as "other", so clients cannot grow the label set).
  void count_request(const std::string& path, int status);

  // Held while a generation runs.
  class InFlight {
   public:
    explicit InFlight(prometheus::Gauge& g) : g_(&g) { g_->Increment(); }
    ~InFlight() { g_->Decrement(); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    prometheus::Gauge* g_;
  };
  InFlight in_flight() { return InFlight(*in_flight_); }

  // A completion ended: `finish_reason` is "stop" or "length", or "cancelled"
  // (the client left, the server stops) or "error" (`status` failed).
  void count_completion(const GenerationResult& result, const std::string& finish_reason);

  // This registry's families in the text format, then `extra` (figures read
  // at scrape time).
  std::string text(const MetricFamilies& extra) const;

  // The histograms' bucket bounds, in seconds (doc/metrics.md).
  static const prometheus::Histogram::BucketBoundaries kFirstTokenBounds, kPerTokenBounds;

 private:
  prometheus::Registry registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& completions_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* completion_tokens_;
  prometheus::Histogram* first_token_;
  prometheus::Histogram* per_token_;
  prometheus::Gauge* in_flight_;
  // One counter per count of SpeculationReport (kSpeculationCounters).
  std::vector<std::pair<prometheus::Counter*, int SpeculationReport::*>> speculation_;
};

}  // namespace swarm
