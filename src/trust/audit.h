// Judging a session's commitments against a reference execution
// (doc/trust.md, "Audits"). Pure: the gateway records what each stage
// committed to, a reference (the gateway's own engine, or other nodes serving
// the same layers) recomputes the rows from the session's tokens, and judge()
// says, stage by stage, whether the commitments hold, and who lied where they
// do not. Exact: honest nodes produce the same bytes as the reference (our
// kernels are batch- and chunk-invariant), so there is no tolerance and an
// honest node is never blamed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/spec_verify.h"
#include "engine/status.h"
#include "swarm/v1/stage.pb.h"
#include "trust/activation_sketch.h"
#include "trust/commitment.h"

namespace swarm::trust {

// One stage of the chain a session ran on.
struct AuditedStage {
  std::string address;
  std::string node_id;     // "" without an identity
  std::string public_key;  // raw 32 bytes the gateway pinned; "" without an identity
  int first_layer = 0, last_layer = 0;
  // Announced kernels that are not bit-identical to the reference's: its rows,
  // and those of every stage after it, are judged by their sketches with a
  // tolerance (trust/activation_sketch.h), not by their hashes.
  bool inexact = false;
};

// One step as the gateway sent it and the last stage answered it.
struct StepRecord {
  uint64_t step_id = 0;
  int position = 0;
  std::vector<int32_t> tokens;
  int n_drafts = 0;
  // The draft model's distribution for each draft (sampled speculation), as
  // sent in Step.draft_probs; empty for greedy and n-gram drafts.
  std::vector<SparseProbs> draft_probs;
  std::vector<int32_t> answer;  // the tokens the last stage returned
  int accepted_drafts = 0;
  std::vector<v1::Commitment> commitments;  // as received, one per stage in chain order
};

struct AuditedSession {
  std::string model_id;
  std::vector<AuditedStage> stages;
  std::vector<StepRecord> steps;  // in the order the answers came
  bool greedy = false;            // the last stage's choices are argmax (no penalties or bias)

  // Some stage is inexact: a reference must sketch its rows for judge().
  bool has_inexact_stage() const {
    for (const AuditedStage& s : stages)
      if (s.inexact) return true;
    return false;
  }
};

// What a sampled (not greedy) step's last stage owes: its answer and how many
// of the step's drafts that answer accepts.
struct SampledAnswer {
  std::vector<int32_t> tokens;
  int accepted_drafts = 0;
};

// What a reference computed for tokens [0, n): a hash per row of each
// stage's output (in the session's wire dtype), and, when the chain ends at
// the head, the argmax token after each position.
struct ReferenceRows {
  std::vector<std::vector<Hash>> output_rows;  // [stage][position]
  std::vector<int32_t> argmax;                 // [position]; empty: not computed
  // Sampled sessions: what the session's own sampler (same parameters, seed
  // and history) answers to each step, plain or speculative, by step id; only
  // steps whose tokens the reference was fed. Empty: not replayed.
  std::map<uint64_t, SampledAnswer> sampled;
  // Chains with an inexact stage: each stage's output rows sketched with
  // kReferenceEntries entries, [stage][position] (an empty sketch: unknown).
  std::vector<std::vector<RowSketch>> sketches;
};

// Replays the last stage's choice for `step` (engine/sampler.h): calls
// `decide(position, draft, q)` for each decision in order, a draft's judgement
// (draft >= 0, with its distribution q) or a sample (draft -1), and stops at
// the first rejected draft. `decide` returns the chosen token and whether the
// draft was accepted; nullopt when it cannot decide (the reference lacks that
// row), and then so does this.
struct Decision {
  int32_t token = -1;
  bool accepted = false;
};
std::optional<SampledAnswer> replay_step(
    const StepRecord& step,
    const std::function<std::optional<Decision>(int position, int32_t draft, const SparseProbs& q)>& decide);

struct Verdict {
  enum class Kind {
    kPass,     // every commitment of the stage that could be checked held
    kFraud,    // a signed (or unsigned) commitment to a wrong result from a right input
    kDispute,  // what it says it received is not what the stage before says it sent
    kMissing,  // an answer without its commitment, or one signed by another key
  };
  Kind kind = Kind::kPass;
  size_t stage = 0;
  uint64_t step_id = 0;
  int steps_checked = 0;      // this stage's commitments compared
  // The last stage: step answers (its choices of tokens) compared with the
  // reference's, and how many of those were speculative (judged drafts).
  int choices_checked = 0, draft_choices_checked = 0;
  // Inexact chains: row sketches compared within the tolerance.
  int sketches_checked = 0;
  std::string reason;
  v1::Commitment evidence;    // the commitment at fault (kFraud, kMissing)
};
const char* to_string(Verdict::Kind k);

// Checks every step whose tokens lie within `history` (the session's tokens
// as its caches held them: the prompt and the accepted output), up to
// `reference`'s length. One verdict per stage: its first fault, or a pass.
// From the first inexact stage of the chain on, rows are judged by their
// sketches within `tolerance` (their inputs, and so their outputs, differ from
// the reference's in the last bits); those stages' token choices are not
// judged (another device may break a near-tie the other way).
// Steps built on tokens no longer in `history` (rejected drafts) are skipped;
// a stage is blamed only where every position of its cache before the step
// was built from inputs that matched the reference.
std::vector<Verdict> judge(const AuditedSession& session, const std::vector<int32_t>& history,
                           const ReferenceRows& reference, const SketchTolerance& tolerance = {});

// The end of the window an audit must recompute: the furthest end of the
// sampled steps whose tokens lie within `history`; 0 when none.
int audit_window(const AuditedSession& session, const std::vector<int32_t>& history,
                 const std::vector<bool>& sampled);

}  // namespace swarm::trust
