#include "pipeline/auditor.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace swarm {

Auditor::Auditor(ReferenceFn reference, VerdictFn on_verdicts, int max_queue)
    : reference_(std::move(reference)),
      on_verdicts_(std::move(on_verdicts)),
      max_queue_(static_cast<size_t>(std::max(1, max_queue))),
      thread_([this] { loop(); }) {}

Auditor::~Auditor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool Auditor::submit(AuditJob job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.submitted;
    if (queue_.size() >= max_queue_) {
      ++stats_.dropped;
      return false;
    }
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

AuditStats Auditor::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  AuditStats s = stats_;
  s.queued = static_cast<int>(queue_.size());
  return s;
}

void Auditor::wait_idle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void Auditor::confirm_frauds(const AuditJob& job, const std::vector<int32_t>& history,
                             const Reference& first, std::vector<trust::Verdict>* verdicts) {
  const bool any = std::any_of(verdicts->begin(), verdicts->end(), [](const trust::Verdict& v) {
    return v.kind == trust::Verdict::Kind::kFraud;
  });
  if (!any || first.trusted) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.second_opinions;
  }
  // Again, with other nodes where the first found a fraud.
  std::vector<std::string> avoid(job.session.stages.size());
  for (const trust::Verdict& v : *verdicts)
    if (v.kind == trust::Verdict::Kind::kFraud && v.stage < first.nodes.size()) avoid[v.stage] = first.nodes[v.stage];
  auto second = reference_(job, avoid);
  std::vector<trust::Verdict> again;
  if (second.ok()) again = trust::judge(job.session, history, second->rows);
  for (trust::Verdict& v : *verdicts) {
    if (v.kind != trust::Verdict::Kind::kFraud) continue;
    if (v.stage < first.nodes.size() && first.nodes[v.stage] == job.session.stages[v.stage].address) {
      // Its own reference: two results of its own for one input.
      v.reason += " (its own result for the same input, in the audit, differs)";
      continue;
    }
    if (!second.ok()) {
      // One reference against the audited node, and nobody to settle it.
      v.kind = trust::Verdict::Kind::kDispute;
      v.reason += " (one reference node says so; no second one to confirm: " + second.status().message() + ")";
    } else if (again[v.stage].kind != trust::Verdict::Kind::kFraud) {
      // The second reference agrees with the audited node: the first lied or erred.
      spdlog::warn("audit: references disagree on {} (layers {}:{}); the second ({}) agrees with it",
                   job.session.stages[v.stage].address, job.session.stages[v.stage].first_layer,
                   job.session.stages[v.stage].last_layer, second->nodes.empty() ? "" : second->nodes.front());
      v = again[v.stage];
    }
  }
}

void Auditor::loop() {
  // Audits use only the CPU that requests leave: the lowest priority, for
  // this thread alone (Linux sets nice values per thread).
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    AuditJob job = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    std::vector<trust::Verdict> verdicts;
    Status failure;
    try {
      auto ref = reference_(job, {});
      if (ref.ok()) {
        std::vector<int32_t> history(job.history.begin(),
                                     job.history.begin() + std::min<size_t>(job.history.size(),
                                                                            static_cast<size_t>(job.window)));
        verdicts = trust::judge(job.session, history, ref->rows);
        confirm_frauds(job, history, *ref, &verdicts);
        on_verdicts_(job, verdicts);
      } else {
        failure = ref.status();
      }
    } catch (const std::exception& e) {
      failure = Status::Internal(std::string("audit: ") + e.what());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!failure.ok()) spdlog::warn("audit of a session on {} stages not run: {}", job.session.stages.size(), failure.message());
    lock.lock();
    busy_ = false;
    stats_.seconds += seconds;
    if (!failure.ok()) {
      ++stats_.failed;
    } else {
      ++stats_.done;
      stats_.positions += job.window;
      for (const trust::Verdict& v : verdicts) {
        stats_.steps_checked += v.steps_checked;
        stats_.choices_checked += v.choices_checked;
        stats_.draft_choices_checked += v.draft_choices_checked;
        stats_.sketches_checked += v.sketches_checked;
        switch (v.kind) {
          case trust::Verdict::Kind::kPass: ++stats_.passes; break;
          case trust::Verdict::Kind::kFraud: ++stats_.frauds; break;
          case trust::Verdict::Kind::kDispute: ++stats_.disputes; break;
          case trust::Verdict::Kind::kMissing: ++stats_.missing; break;
        }
      }
    }
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

}  // namespace swarm
