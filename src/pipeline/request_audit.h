// What a request leaves for trust (doc/trust.md): the sessions it ran on
// chains, turned into audit jobs (which steps are sampled) and into the work
// each node is paid for. The gateway's pipeline calls these when a session
// ends; the sampling takes its randomness as an input.
#pragma once

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "pipeline/auditor.h"
#include "pipeline/generation.h"
#include "routing/chain.h"
#include "trust/audit.h"

namespace swarm {

// The node id of a pinned key (hex, as PeerSnapshot and ChainStage carry
// it); "" when it is not an Ed25519 public key. Only a verified identity names
// a node: reputation, audits and credits are kept under it, else under the
// address.
std::string node_id_of_key(const std::string& key_hex);

// Whether the last stage's choices are a plain argmax (then any reference's
// argmax audits them; other sampling, a grammar's masking included, needs a
// replay of the session's sampler, which --audit-local does).
bool greedy_sampling(const SamplingParams& sp);

trust::AuditedSession audited_session(const std::string& model_id, const std::vector<ChainStage>& chain,
                                      const std::vector<trust::StepRecord>& records, bool greedy);

// Adds the work of `session`'s steps to `work` (merged by node and range):
// steps, token positions and the receipts digest over the commitments.
// `price_of(address)`: the node's announced price.
void add_node_work(const trust::AuditedSession& session,
                   const std::function<double(const std::string&)>& price_of,
                   std::vector<NodeWork>* work);

// Samples the steps of `session` to audit: each step with the highest audit
// rate of its stages (`rate_of(stage key)`), one draw per step.
// Returns the job, or a job with window 0 when nothing was sampled.
AuditJob plan_audit(trust::AuditedSession session, const std::vector<int32_t>& history,
                    v1::Tensor::DType wire_dtype,
                    const std::function<double(const std::string&)>& rate_of, std::mt19937_64& rng);

// A proof of `verdict`'s fraud anyone holding the model can check (JSON):
// the node's signed commitment (protobuf, base64), the session's tokens up to
// the step's end, the layer range, the model and the wire dtype, and the
// reason. Recompute the rows from the tokens and compare with the hashes the
// node signed.
std::string fraud_proof(const AuditJob& job, const trust::Verdict& verdict);

}  // namespace swarm
