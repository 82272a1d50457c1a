#include "pipeline/request_audit.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "net/identity.h"

namespace swarm {

std::string node_id_of_key(const std::string& key_hex) {
  auto raw = net::from_hex(key_hex);
  if (!raw.ok() || raw->size() != net::kPublicKeyBytes) return "";
  net::PublicKey key;
  std::copy(raw->begin(), raw->end(), key.begin());
  return net::node_id_of(key);
}

bool greedy_sampling(const SamplingParams& sp) {
  return sp.temperature <= 0 && sp.repeat_penalty == 1.0f && sp.presence_penalty == 0 &&
         sp.frequency_penalty == 0 && sp.logit_bias.empty() && sp.grammar.empty();
}

trust::AuditedSession audited_session(const std::string& model_id, const std::vector<ChainStage>& chain,
                                      const std::vector<trust::StepRecord>& records, bool greedy) {
  trust::AuditedSession s;
  s.model_id = model_id;
  s.greedy = greedy;
  for (const ChainStage& c : chain) {
    trust::AuditedStage a;
    a.address = c.address;
    a.first_layer = c.first_layer;
    a.last_layer = c.last_layer;
    a.inexact = c.inexact;
    if (!c.public_key.empty()) {
      auto raw = net::from_hex(c.public_key);
      if (raw.ok()) a.public_key = *raw;
      a.node_id = node_id_of_key(c.public_key);
    }
    s.stages.push_back(std::move(a));
  }
  s.steps = records;
  return s;
}

void add_node_work(const trust::AuditedSession& session,
                   const std::function<double(const std::string&)>& price_of,
                   std::vector<NodeWork>* work) {
  for (size_t k = 0; k < session.stages.size(); ++k) {
    const trust::AuditedStage& stage = session.stages[k];
    crypto_generichash_state state;
    crypto_generichash_init(&state, nullptr, 0, trust::kHashBytes);
    int64_t steps = 0, tokens = 0;
    for (const trust::StepRecord& r : session.steps) {
      if (k >= r.commitments.size()) continue;
      const std::string bytes = r.commitments[k].SerializeAsString();
      const trust::Hash h = trust::hash_bytes(bytes.data(), bytes.size());
      crypto_generichash_update(&state, h.data(), h.size());
      ++steps;
      tokens += static_cast<int64_t>(r.tokens.size());
    }
    if (steps == 0) continue;
    trust::Hash digest;
    crypto_generichash_final(&state, digest.data(), digest.size());
    auto same = [&](const NodeWork& w) {
      return w.address == stage.address && w.node_id == stage.node_id &&
             w.first_layer == stage.first_layer && w.last_layer == stage.last_layer;
    };
    auto it = std::find_if(work->begin(), work->end(), same);
    if (it == work->end()) {
      NodeWork w;
      w.node_id = stage.node_id;
      w.address = stage.address;
      w.first_layer = stage.first_layer;
      w.last_layer = stage.last_layer;
      w.price_per_1k = price_of(stage.address);
      work->push_back(w);
      it = work->end() - 1;
    } else {
      // Two sessions on one node (after a failover): one digest over both.
      std::string both = it->receipts + trust::hex(digest);
      digest = trust::hash_bytes(both.data(), both.size());
    }
    it->steps += steps;
    it->tokens += tokens;
    it->receipts = trust::hex(digest);
  }
}

AuditJob plan_audit(trust::AuditedSession session, const std::vector<int32_t>& history,
                    v1::Tensor::DType wire_dtype,
                    const std::function<double(const std::string&)>& rate_of, std::mt19937_64& rng) {
  // A step is sampled at the highest of its stages' rates: a node on
  // probation raises it for the steps it serves.
  double rate = 0;
  for (const trust::AuditedStage& s : session.stages)
    rate = std::max(rate, rate_of(s.node_id.empty() ? s.address : s.node_id));
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<bool> sampled(session.steps.size(), false);
  for (size_t i = 0; i < session.steps.size(); ++i) sampled[i] = u(rng) < rate;
  AuditJob job;
  job.window = trust::audit_window(session, history, sampled);
  job.history = history;
  job.wire_dtype = wire_dtype;
  job.session = std::move(session);
  return job;
}

std::string fraud_proof(const AuditJob& job, const trust::Verdict& verdict) {
  const v1::Commitment& c = verdict.evidence;
  const std::string bytes = c.SerializeAsString();
  std::string b64(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  b64.resize(std::strlen(b64.c_str()));
  const size_t end = std::min<size_t>(job.history.size(), static_cast<size_t>(c.position() + c.n_tokens()));
  const trust::AuditedStage& stage = job.session.stages[verdict.stage];
  nlohmann::ordered_json j = {
      {"format", "swarm-fraud-proof-v1"},
      {"model_id", job.session.model_id},
      {"node_id", stage.node_id},
      {"address", stage.address},
      {"layers", {stage.first_layer, stage.last_layer}},
      {"wire_dtype", job.wire_dtype == v1::Tensor::F16 ? "f16" : "f32"},
      {"tokens", std::vector<int32_t>(job.history.begin(), job.history.begin() + static_cast<std::ptrdiff_t>(end))},
      {"commitment", b64},
      {"signed", !c.signature().empty()},
      {"reason", verdict.reason},
  };
  return j.dump();
}

}  // namespace swarm
