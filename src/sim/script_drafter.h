// The text a simulated request's model writes and the drafter that guesses
// it: the simulator has no weights, so a request's tokens are drawn from its
// seed, and its drafts are as good as the scenario's [speculation] says. The
// last stage judges them against the script as a real one judges drafts
// against its model (pipeline/scripted_stage.h).
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pipeline/drafter.h"
#include "sim/scenario.h"

namespace swarm::sim {

// The token a request of `seed` writes at `position`, in [1, 32000].
int32_t script_token(uint64_t seed, int64_t position);

// Whether the draft for position x is right is fixed per request and
// position (the driver may ask for the same position twice): a two-state
// chain over positions, right after a right one with `acceptance_after_hit`,
// after a wrong one with `acceptance` (every draft independent unless
// acceptance_after_hit is given). Whether it has a guess when asked is fixed
// per position too, and a chain over the positions it is asked at, in order:
// a guess after one with `guess_after_guess`, after none with the rate that
// keeps `proposal_rate` the share of questions with one (every question
// independent unless guess_after_guess is given). A guess is for all n tokens
// asked: the n-gram drafter's, once it matches, runs on through its own
// guesses. With the scenario's `trace`, none of that: for a question after a
// prompt of `prompt_tokens` the drafts are the trace's (Speculation::trace),
// and after a context holding one of its wrong drafts, wrong guesses.
class ScriptDrafter final : public Drafter {
 public:
  ScriptDrafter(uint64_t seed, const Speculation& s, int64_t prompt_tokens, uint64_t rng_seed);
  Result<DraftProposal> propose(const std::vector<int32_t>& context, int n) override;
  std::string name() const override { return "script"; }

 private:
  bool holds(int64_t pos);
  bool guesses(int64_t pos);
  // Whether `context` holds one of the wrong drafts this drafter made.
  bool off_script(const std::vector<int32_t>& context) const;
  static int32_t wrong(int32_t right) { return right % 32000 + 1; }

  const uint64_t seed_;
  const std::vector<int>& trace_;
  const int64_t prompt_tokens_;
  const double acceptance_, after_hit_, proposal_rate_, guess_after_guess_, guess_after_none_;
  std::mt19937_64 rng_, guess_rng_;
  std::uniform_real_distribution<double> u_{0.0, 1.0};
  std::vector<bool> right_;            // by position, drawn in order
  std::map<int64_t, bool> has_guess_;  // by position asked at
  bool any_asked_ = false, last_guessed_ = false;  // the latest drawn
  std::set<int64_t> wrong_at_;  // positions it drafted a wrong token for (from a trace)
};

}  // namespace swarm::sim
