#include "cli/serving_metrics.h"

#include <algorithm>
#include <string>
#include <vector>

#include "trust/credits.h"

namespace swarm::cli {

MetricFamilies local_backend_metrics(const LocalBackend& backend, uint64_t kv_budget_bytes) {
  const LocalBackend::Stats s = backend.stats();
  MetricSnapshot m;
  m.gauge("swarm_sequences_active", "Requests in the batch, holding a KV cache", s.active)
      .gauge("swarm_queue_length", "Requests submitted and not yet in the batch", s.waiting)
      .counter("swarm_batch_iterations_total", "Batched forward passes run", s.iterations)
      .gauge("swarm_kv_used_bytes", "KV cache memory reserved by the requests admitted",
             static_cast<double>(s.kv_bytes_reserved));
  if (kv_budget_bytes > 0)
    m.gauge("swarm_kv_free_bytes", "KV cache memory of the budget (--kv-memory) not reserved",
            static_cast<double>(
                kv_budget_bytes > s.kv_bytes_reserved ? kv_budget_bytes - s.kv_bytes_reserved : 0));
  return m.take();
}

MetricFamilies gateway_metrics(PipelineBackend& backend, trust::Ledger* ledger) {
  MetricSnapshot m;
  if (ledger) {
    if (auto t = ledger->totals(); t.ok()) {
      const char* help = "Credits in the ledger, by where they are (granted: all ever given to keys)";
      m.gauge("swarm_credits", help, trust::to_credits(t->granted), {{"state", "granted"}})
          .gauge("swarm_credits", help, trust::to_credits(t->balances), {{"state", "balances"}})
          .gauge("swarm_credits", help, trust::to_credits(t->held), {{"state", "held"}})
          .gauge("swarm_credits", help, trust::to_credits(t->pending), {{"state", "pending"}})
          .gauge("swarm_credits", help, trust::to_credits(t->paid), {{"state", "paid"}})
          .gauge("swarm_credits", help, trust::to_credits(t->forfeited), {{"state", "forfeited"}})
          .gauge("swarm_credits_conserved",
                 "1 while every credit granted is in a balance, a hold, or a node's earnings",
                 t->conserved() ? 1 : 0)
          .counter("swarm_ledger_entries_total", "Earnings entries the ledger wrote (one per node per request)",
                   static_cast<double>(t->entries));
    }
  }
  m.counter("swarm_node_failures_total",
            "Failures blamed on a node: it died, stalled, erred or failed an audit",
            static_cast<double>(backend.node_failures()))
      .counter("swarm_failovers_total",
               "Sessions replayed on a new chain after a node failed (recoveries)",
               static_cast<double>(backend.recoveries()))
      .counter("swarm_step_timeout_waits_total",
               "Steps waited on past the step timeout instead of replayed: every stage answered "
               "and no other chain could take the session",
               static_cast<double>(backend.ceiling_waits()));
  const AuditStats a = backend.audit_stats();
  m.counter("swarm_audit_jobs_submitted_total", "Sessions queued for an audit", a.submitted)
      .counter("swarm_audit_jobs_dropped_total", "Sessions not audited: the audit queue was full",
               a.dropped)
      .counter("swarm_audit_jobs_done_total", "Audits judged", a.done)
      .counter("swarm_audit_jobs_failed_total", "Audits that could not be run (no reference)",
               a.failed)
      .gauge("swarm_audit_queue_length", "Sessions waiting for their audit", a.queued)
      .counter("swarm_audit_steps_checked_total", "Stage commitments compared", a.steps_checked)
      .counter("swarm_audit_choices_checked_total",
               "Last stages' answers (token choices) compared, by whether the step judged drafts",
               static_cast<double>(a.choices_checked - a.draft_choices_checked), {{"drafts", "no"}})
      .counter("swarm_audit_choices_checked_total",
               "Last stages' answers (token choices) compared, by whether the step judged drafts",
               static_cast<double>(a.draft_choices_checked), {{"drafts", "yes"}})
      .counter("swarm_audit_sketches_checked_total",
               "Row sketches of inexact chains compared within the tolerance",
               static_cast<double>(a.sketches_checked))
      .counter("swarm_audit_positions_total", "Token positions recomputed for audits", a.positions)
      .counter("swarm_audit_seconds_total", "Time spent recomputing and judging", a.seconds)
      .counter("swarm_audit_second_opinions_total",
               "References run again on other nodes to confirm a fraud", a.second_opinions);
  const char* verdict_help = "Audit verdicts, by kind";
  m.counter("swarm_audit_verdicts_total", verdict_help, a.passes, {{"verdict", "pass"}})
      .counter("swarm_audit_verdicts_total", verdict_help, a.frauds, {{"verdict", "fraud"}})
      .counter("swarm_audit_verdicts_total", verdict_help, a.disputes, {{"verdict", "dispute"}})
      .counter("swarm_audit_verdicts_total", verdict_help, a.missing, {{"verdict", "missing"}});
  const std::vector<PeerSnapshot> peers = backend.peers();
  m.gauge("swarm_peers", "Peers as last surveyed", static_cast<double>(peers.size()));
  for (const PeerSnapshot& p : peers) {
    const MetricLabels labels = {
        {"peer", p.address},
        {"layers", std::to_string(p.first_layer) + ":" + std::to_string(p.last_layer)}};
    if (p.rtt_seconds > 0)
      m.gauge("swarm_peer_rtt_seconds", "Measured round trip to the peer", p.rtt_seconds, labels);
    m.gauge("swarm_peer_layer_tokens_per_second",
            "The peer's measured decode speed through one layer (0: unknown)",
            p.layer_tokens_per_second, labels);
    m.gauge("swarm_peer_reputation", "The peer's reputation score in [0, 1]", p.reputation, labels);
    m.gauge("swarm_peer_excluded", "1 when a proven fraud excludes the peer from routes",
            p.excluded ? 1 : 0, labels);
  }
  return m.take();
}

MetricFamilies node_metrics(const node::StageStats& s) {
  const node::StageLoad& l = s.load;
  const node::BatchTally::Snapshot& b = s.batches;
  std::vector<double> bounds(node::BatchTally::kTokenBounds.begin(),
                             node::BatchTally::kTokenBounds.end());
  const MetricLabels layers = {
      {"layers", std::to_string(l.first_layer) + ":" + std::to_string(l.last_layer)}};
  MetricSnapshot m;
  m.gauge("swarm_node_info", "Always 1; the layers served as a label", 1, layers)
      .gauge("swarm_node_sessions", "Sessions open now", s.sessions)
      .gauge("swarm_node_queue_length", "Steps waiting for a batch", s.queued_steps)
      .gauge("swarm_node_draining", "1 while draining (refusing new sessions)", l.draining ? 1 : 0)
      .counter("swarm_node_steps_total", "Steps (and chunks of long prompts) run in batches",
               static_cast<double>(b.steps))
      .counter("swarm_node_tokens_total", "Token positions run through this node's layers",
               static_cast<double>(b.tokens))
      .counter("swarm_node_steps_cancelled_total",
               "Steps dropped by a Cancel (queued, or finished after it)",
               static_cast<double>(s.steps_cancelled))
      .histogram("swarm_node_batch_tokens", "Token positions per batch run", bounds, b.per_bucket,
                 static_cast<double>(b.tokens))
      .gauge("swarm_node_kv_used_bytes", "KV cache memory reserved by open sessions",
             static_cast<double>(s.kv_bytes_total - std::min(s.kv_bytes_total, l.kv_bytes_free)))
      .gauge("swarm_node_kv_free_bytes", "KV cache memory of the budget (--kv-memory) free",
             static_cast<double>(l.kv_bytes_free))
      .counter("swarm_node_compute_seconds_total", "Compute time of all batches run",
               s.compute_seconds)
      .counter("swarm_node_cancelled_compute_seconds_total",
               "Of the compute time, what went to steps cancelled after they ran",
               s.cancelled_compute_seconds)
      .gauge("swarm_node_layer_tokens_per_second",
             "Measured decode speed through one layer (0 until the first batch)",
             l.layer_tokens_per_second);
  return m.take();
}

}  // namespace swarm::cli
