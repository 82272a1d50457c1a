// The speculation driver and its controller on a simulated chain (four stages,
// 20 ms links) on a simulated clock: whatever the drafts, greedy output is the
// chain's own text; `auto` backs off where drafts fail and speculates where
// they hold, as measured in simulated time, so no test depends on how fast
// this machine is today.
#include "pipeline/speculative_decoder.h"

#include <gtest/gtest.h>

#include <functional>

#include "pipeline/simulated_chain.h"

namespace swarm {
namespace {

using std::chrono::milliseconds;

constexpr int kPrompt = 16;
constexpr int kScript = 400;

std::vector<int32_t> script() {
  std::vector<int32_t> s;
  for (int i = 0; i < kScript; ++i) s.push_back(1000 + (i * 7919) % 5000);
  return s;
}

// Knows the chain's text: drafts the token at each position right where
// `right(position)` says, else a wrong one (after which nothing holds anyway).
// With `guesses`, it has no guess at all where guesses(context length) is false.
class OracleDrafter final : public Drafter {
 public:
  explicit OracleDrafter(std::function<bool(int)> right,
                         std::function<bool(int)> guesses = [](int) { return true; })
      : right_(std::move(right)), guesses_(std::move(guesses)) {}
  Result<DraftProposal> propose(const std::vector<int32_t>& context, int n) override {
    static const std::vector<int32_t> text = script();
    DraftProposal p;
    if (!guesses_(static_cast<int>(context.size()))) return p;
    for (int i = 0; i < n; ++i) {
      const int pos = static_cast<int>(context.size()) + i;
      if (pos >= kScript) break;
      p.tokens.push_back(right_(pos) ? text[pos] : 7);
    }
    return p;
  }
  std::string name() const override { return "oracle"; }

 private:
  std::function<bool(int)> right_, guesses_;
};

struct Decoded {
  std::vector<int32_t> tokens;
  SpeculationReport report;
  double seconds = 0;  // simulated, from the first token to the last
  Status status;
  std::vector<int32_t> fed;
  int32_t anchor = 0;
};

ChainStage stage(int i) { return SimulatedStageSpec::at("s" + std::to_string(i) + ":1", i, i + 1); }

class SpeculativeDecoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<SimulatedStageSpec> specs;
    for (int i = 0; i < 4; ++i) specs.push_back({stage(i), milliseconds(10), milliseconds(1)});
    chain_ = std::make_shared<SimulatedChain>(clock_, specs, milliseconds(20), script());
    options_.transport = chain_;
    options_.clock = &clock_;
  }

  // One request of `n` tokens after the prompt, in `mode`; `before_token(i)`
  // runs before the i-th token is emitted (faults).
  Decoded decode(SpeculationMode mode, Drafter& drafter, int n,
                 const std::function<void(int)>& before_token = {}) {
    Decoded d;
    std::vector<ChainStage> stages;
    for (int i = 0; i < 4; ++i) stages.push_back(stage(i));
    ChainSession session(stages, options_, &times_);
    d.status = session.open("simulated-model", 4, SamplingParams{}, 1024);
    if (!d.status.ok()) return d;
    const std::vector<int32_t> text = script();
    std::vector<int32_t> fed(text.begin(), text.begin() + kPrompt);
    auto first = session.step(fed, 0);
    if (!first.ok()) {
      d.status = first.status();
      return d;
    }
    d.tokens.push_back(*first);
    const auto t0 = clock_.now();
    int32_t anchor = *first;
    SpeculationOptions spec;
    spec.mode = mode;
    auto emit = [&](int32_t t) {
      if (before_token) before_token(static_cast<int>(d.tokens.size()));
      d.tokens.push_back(t);
      return static_cast<int>(d.tokens.size()) < n;
    };
    auto remaining = [&] { return n - static_cast<int>(d.tokens.size()); };
    if (mode == SpeculationMode::kOff) {
      // As the gateway decodes plainly: one step per token.
      for (bool go = true; go;) {
        auto t = session.step({anchor}, static_cast<int>(fed.size()));
        if (!t.ok()) {
          d.status = t.status();
          break;
        }
        fed.push_back(anchor);
        anchor = *t;
        ++d.report.plain_steps;
        go = emit(anchor);
      }
    } else {
      d.status = decode_speculatively(session, drafter, spec, *memory_, fed, anchor, emit,
                                      remaining, d.report);
    }
    d.seconds = std::chrono::duration<double>(clock_.now() - t0).count();
    d.fed = fed;
    d.anchor = anchor;
    return d;
  }

  // `requests` requests of `n` tokens in `auto`, one after another (the
  // controller learns from each): the last one.
  Decoded decode_auto(Drafter& drafter, int n, int requests = 2) {
    Decoded d;
    for (int i = 0; i < requests; ++i) {
      d = decode(SpeculationMode::kAuto, drafter, n);
      EXPECT_TRUE(d.status.ok()) << d.status.ToString();
      if (!d.status.ok()) break;
      EXPECT_EQ(d.tokens, want(n)) << "request " << i;
    }
    return d;
  }

  static std::vector<int32_t> want(int n) {
    const std::vector<int32_t> text = script();
    return std::vector<int32_t>(text.begin() + kPrompt, text.begin() + kPrompt + n);
  }

  SimulatedClock clock_;
  std::shared_ptr<SimulatedChain> chain_;
  PipelineOptions options_;
  StepTimeBook times_;
  std::unique_ptr<SpeculationMemory> memory_ = std::make_unique<SpeculationMemory>(clock_);
  // What the controller learned goes: the next request starts cold.
  void forget() { memory_ = std::make_unique<SpeculationMemory>(clock_); }
};

TEST_F(SpeculativeDecoderTest, ForcedSpeculationGivesExactlyTheChainsText) {
  // Seven drafts in ten hold, in a fixed pattern.
  OracleDrafter drafter([](int pos) { return (pos * 37) % 10 < 7; });
  const Decoded d = decode(SpeculationMode::kNgram, drafter, 96);
  ASSERT_TRUE(d.status.ok()) << d.status.ToString();
  EXPECT_EQ(d.tokens, want(96));
  const SpeculationReport& r = d.report;
  EXPECT_GT(r.accepted, 0);
  EXPECT_LT(r.accepted, r.drafted);
  EXPECT_GT(r.cancelled_runs, 0);
  // No two wrong positions are adjacent in the pattern: a chain starts right
  // after a correction, so its first draft always holds; some chains end in
  // a rejection.
  EXPECT_GT(r.draft_chains, 0);
  EXPECT_EQ(r.chains_first_held, r.draft_chains);
  EXPECT_LT(r.chains_all_held, r.draft_chains);
  // Every run was answered or cancelled; the prompt's step is not counted here.
  EXPECT_EQ(r.plain_steps + r.speculative_steps, r.runs - r.cancelled_runs);
}

// A drafter with a guess at only some positions (as the n-gram drafter finds
// a match only where the text repeats): the report counts how often it was
// asked and how often it had nothing, and the text is the chain's.
TEST_F(SpeculativeDecoderTest, TheReportCountsProposalsWithoutAGuess) {
  OracleDrafter drafter([](int) { return true; }, [](int length) { return length % 3 == 0; });
  const Decoded d = decode(SpeculationMode::kNgram, drafter, 64);
  ASSERT_TRUE(d.status.ok()) << d.status.ToString();
  EXPECT_EQ(d.tokens, want(64));
  const SpeculationReport& r = d.report;
  EXPECT_GT(r.proposals, 0);
  EXPECT_GT(r.empty_proposals, 0);
  EXPECT_LT(r.empty_proposals, r.proposals);
  EXPECT_GT(r.speculative_steps, 0);
  EXPECT_GT(r.plain_steps, 0);
  // Every plain step while forced to speculate came from a question without
  // a guess (or from the last token, for which no draft is asked).
  EXPECT_LE(r.plain_steps, r.empty_proposals + 1);
  // Guesses at a third of the positions: the question after one, past its
  // held drafts, did not land on another.
  EXPECT_GT(r.proposals_after_guess, 0);
  EXPECT_LT(r.guesses_after_guess, r.proposals_after_guess);
}

// A drafter with a guess everywhere has one after every guess; one with none
// never had a guess to follow.
TEST_F(SpeculativeDecoderTest, TheReportCountsGuessesFollowingGuesses) {
  OracleDrafter always([](int) { return true; });
  const Decoded a = decode(SpeculationMode::kNgram, always, 64);
  ASSERT_TRUE(a.status.ok()) << a.status.ToString();
  EXPECT_GT(a.report.proposals_after_guess, 0);
  EXPECT_EQ(a.report.guesses_after_guess, a.report.proposals_after_guess);

  forget();
  OracleDrafter never([](int) { return true; }, [](int) { return false; });
  const Decoded n = decode(SpeculationMode::kNgram, never, 64);
  ASSERT_TRUE(n.status.ok()) << n.status.ToString();
  EXPECT_GT(n.report.proposals, 0);
  EXPECT_EQ(n.report.empty_proposals, n.report.proposals);
  EXPECT_EQ(n.report.proposals_after_guess, 0);
  EXPECT_EQ(n.report.guesses_after_guess, 0);
}

// Drafts that never hold: forced speculation keeps paying for them; `auto`
// judges them while decoding plainly (shadow chains), sends almost none, and
// is as fast as plain decoding.
TEST_F(SpeculativeDecoderTest, AutoBacksOffWhereDraftsFail) {
  OracleDrafter never([](int) { return false; });
  const int n = 64;
  const Decoded off = decode(SpeculationMode::kOff, never, n);
  ASSERT_TRUE(off.status.ok()) << off.status.ToString();
  EXPECT_EQ(off.tokens, want(n));
  EXPECT_EQ(off.report.drafted, 0);

  forget();
  const Decoded forced = decode(SpeculationMode::kNgram, never, n);
  ASSERT_TRUE(forced.status.ok()) << forced.status.ToString();
  EXPECT_EQ(forced.tokens, want(n));
  EXPECT_EQ(forced.report.accepted, 0);
  EXPECT_GT(forced.report.draft_chains, 0);
  EXPECT_EQ(forced.report.chains_first_held, 0);
  ASSERT_GT(forced.report.drafted, n);

  forget();
  int auto_drafts = 0, shadow_chains = 0;
  double auto_seconds = 0;
  for (int i = 0; i < 3; ++i) {
    const Decoded a = decode(SpeculationMode::kAuto, never, n);
    ASSERT_TRUE(a.status.ok()) << a.status.ToString();
    EXPECT_EQ(a.tokens, want(n)) << "request " << i;
    auto_drafts += a.report.drafted;
    shadow_chains += a.report.shadow_chains;
    auto_seconds = a.seconds;
  }
  EXPECT_GT(shadow_chains, 0);
  // Three requests of `auto` draft less than a tenth of one forced request.
  EXPECT_LT(auto_drafts * 10, forced.report.drafted);
  // And the third runs at plain decoding's pace (within a step or two).
  EXPECT_LE(auto_seconds, off.seconds * 1.05) << auto_seconds << " s against " << off.seconds;
  std::printf("drafts fail: off %.3f s, ngram %.3f s (%d drafts), auto %.3f s (%d drafts in 3)\n",
              off.seconds, forced.seconds, forced.report.drafted, auto_seconds, auto_drafts);
}

// Drafts that hold: the shadow chains show it, `auto` speculates, and at 20 ms
// links it decodes well over twice as fast as plain decoding.
TEST_F(SpeculativeDecoderTest, AutoSpeculatesWhereDraftsHold) {
  OracleDrafter always([](int) { return true; });
  const int n = 96;
  const Decoded off = decode(SpeculationMode::kOff, always, n);
  ASSERT_TRUE(off.status.ok()) << off.status.ToString();
  forget();
  const Decoded a = decode_auto(always, n);
  ASSERT_TRUE(a.status.ok());
  EXPECT_GT(a.report.speculative_steps, 0);
  EXPECT_GT(a.report.accepted, n / 2);
  // Every chain that carried drafts started well and held to its end.
  EXPECT_GT(a.report.draft_chains, 0);
  EXPECT_EQ(a.report.chains_first_held, a.report.draft_chains);
  EXPECT_EQ(a.report.chains_all_held, a.report.draft_chains);
  EXPECT_LT(a.seconds * 2, off.seconds) << a.seconds << " s against " << off.seconds;
  std::printf("drafts hold: off %.3f s, auto %.3f s (%d of %d drafts accepted)\n", off.seconds,
              a.seconds, a.report.accepted, a.report.drafted);
}

// Drafts that hold in runs, as the n-gram drafter's do on ordinary text: a
// chain's first draft holds about a third of the time, but a draft after a
// held one nearly always holds. `auto` must judge each draft at its place in
// the run of held drafts before it: with a chain's drafts counted from its
// start it sent one or two a chain and took 19.3 s here, 1.34x forced
// speculation.
TEST_F(SpeculativeDecoderTest, AutoLearnsThatDraftsAfterAHeldOneHold) {
  // Right for 14 positions, then wrong for 13.
  OracleDrafter runs([](int pos) { return pos % 27 < 14; });
  const int n = 192;
  const Decoded off = decode(SpeculationMode::kOff, runs, n);
  ASSERT_TRUE(off.status.ok()) << off.status.ToString();
  forget();
  const Decoded forced = decode(SpeculationMode::kNgram, runs, n);
  ASSERT_TRUE(forced.status.ok()) << forced.status.ToString();
  forget();
  const Decoded a = decode_auto(runs, n);
  ASSERT_TRUE(a.status.ok());
  std::printf("drafts hold in runs: off %.3f s, ngram %.3f s, auto %.3f s (%d of %d drafts "
              "accepted, %d chains)\n",
              off.seconds, forced.seconds, a.seconds, a.report.accepted, a.report.drafted,
              a.report.draft_chains);
  EXPECT_LT(a.seconds, 1.15 * forced.seconds) << a.seconds << " s against " << forced.seconds;
}

// A drafter that guesses one token at a time (the n-gram drafter's guess is
// short where the text's match ends): the driver asks again until W runs are
// in flight, so it decodes about as fast as with one that guesses every
// token asked. Topping up one run per verdict, the pipeline kept the depth
// its chain began with (one run) to the end: 7.1 s here, 5.4x slower.
TEST_F(SpeculativeDecoderTest, ShortGuessesStillFillThePipeline) {
  class OneAtATime final : public Drafter {
   public:
    Result<DraftProposal> propose(const std::vector<int32_t>& context, int n) override {
      return all_.propose(context, std::min(n, 1));
    }
    std::string name() const override { return "one at a time"; }

   private:
    OracleDrafter all_{[](int) { return true; }};
  };
  OracleDrafter whole([](int) { return true; });
  OneAtATime short_guesses;
  const int n = 96;
  const Decoded w = decode(SpeculationMode::kNgram, whole, n);
  ASSERT_TRUE(w.status.ok()) << w.status.ToString();
  forget();
  const Decoded s = decode(SpeculationMode::kNgram, short_guesses, n);
  ASSERT_TRUE(s.status.ok()) << s.status.ToString();
  EXPECT_EQ(s.tokens, want(n));
  EXPECT_LT(s.seconds, 1.25 * w.seconds) << s.seconds << " s against " << w.seconds;
  std::printf("one-token guesses %.3f s, whole guesses %.3f s\n", s.seconds, w.seconds);
}

// A stage dies with runs in flight: the driver fails, leaving fed + anchor as
// exactly the verified text, which is what a replay on a new chain rebuilds.
TEST_F(SpeculativeDecoderTest, AFailureMidSpeculationLeavesTheVerifiedTextForTheReplay) {
  OracleDrafter mostly([](int pos) { return pos % 5 != 0; });
  const Decoded d = decode(SpeculationMode::kNgram, mostly, 96, [&](int i) {
    if (i == 40) chain_->kill("s2:1");
  });
  ASSERT_FALSE(d.status.ok());
  EXPECT_EQ(d.status.code(), Status::Code::kUnavailable) << d.status.ToString();
  const std::vector<int32_t> text = script();
  ASSERT_GE(d.fed.size(), static_cast<size_t>(kPrompt));
  EXPECT_EQ(d.fed, std::vector<int32_t>(text.begin(), text.begin() + d.fed.size()));
  EXPECT_EQ(d.anchor, text[d.fed.size()]);
  // The anchor is the last token emitted: nothing is emitted twice or skipped.
  EXPECT_EQ(d.tokens.back(), d.anchor);
  EXPECT_EQ(static_cast<int>(d.fed.size()) - kPrompt + 1, static_cast<int>(d.tokens.size()));
}

}  // namespace
}  // namespace swarm
