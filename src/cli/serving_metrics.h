// The figures `swarm serve`, `swarm gateway` and `swarm node` add to their
// /metrics beyond the API's own (doc/metrics.md), read from what each process
// already keeps when a scrape comes.
#pragma once

#include <cstdint>

#include "api/metric_families.h"
#include "node/stage_server.h"
#include "pipeline/local_backend.h"
#include "pipeline/pipeline_backend.h"
#include "trust/ledger.h"

namespace swarm::cli {

// `swarm serve`: the batch, the admission queue and the KV budget
// (`kv_budget_bytes` 0: none, so no free figure).
MetricFamilies local_backend_metrics(const LocalBackend& backend, uint64_t kv_budget_bytes);

// `swarm gateway`: node failures and failovers, audits, each surveyed peer's
// round trip, speed and standing, and with a ledger (--api-keys) where the
// credits are.
MetricFamilies gateway_metrics(PipelineBackend& backend, trust::Ledger* ledger = nullptr);

// `swarm node --metrics-listen`: sessions, steps, batches, KV memory, compute.
MetricFamilies node_metrics(const node::StageStats& stats);

}  // namespace swarm::cli
