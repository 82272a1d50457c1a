#include "node/stage_session.h"

#include <spdlog/spdlog.h>

#include "node/server_stream.h"

namespace swarm::node {

Status rewind_session(Session& s, int length) {
  const int before = s.cache->length();
  SWARM_RETURN_IF_ERROR(s.cache->truncate(length));
  s.prefix.truncate(length);
  if (!s.sampler || length == before) return Status::Ok();
  auto it = s.sampler_at.find(length);
  if (it != s.sampler_at.end())
    *s.sampler = it->second;
  else
    spdlog::warn(
        "session '{}': no sampler state at length {}; penalties keep the rolled-back tokens",
        s.id.substr(0, 64), length);
  s.sampler_at.erase(s.sampler_at.upper_bound(length), s.sampler_at.end());
  return Status::Ok();
}

bool is_cancelled(const Session& s, uint64_t step_id) {
  for (const auto& [first, last] : s.cancelled)
    if (first <= step_id && step_id <= last) return true;
  return false;
}

void forget_cancels_before(Session& s, uint64_t step_id) {
  std::erase_if(s.cancelled, [&](const auto& r) { return r.second < step_id; });
}

v1::StageResponse error_response(const std::string& session, uint64_t step, grpc::StatusCode code,
                                 const std::string& msg) {
  v1::StageResponse r;
  v1::Error* e = r.mutable_error();
  e->set_session_id(session);
  e->set_step_id(step);
  e->set_code(code);
  e->set_message(msg);
  return r;
}

v1::StageResponse cancelled_response(const Session& s, uint64_t step_id) {
  return error_response(s.id, step_id, grpc::StatusCode::CANCELLED,
                        "Step " + std::to_string(step_id) + ": cancelled");
}

void snapshot_sampler(Session& s, int length) {
  s.sampler_at.insert_or_assign(length, *s.sampler);
  s.sampler_at.erase(s.sampler_at.begin(), s.sampler_at.lower_bound(length - kSnapshotWindow));
}

void remember_last_row(Session& s, const float* row, int n_vocab, int at) {
  s.last_row.assign(row, row + n_vocab);
  s.last_row_at = at;
}

InputTicket::InputTicket(std::shared_ptr<ServerStream> stream, size_t bytes)
    : stream_(std::move(stream)), bytes_(bytes) {
  stream_->hold_input(bytes_);
}
InputTicket::~InputTicket() { stream_->release_input(bytes_); }

}  // namespace swarm::node
