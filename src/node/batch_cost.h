// What a batch costs a node as a function of its tokens, t(b) = base +
// per_token x b, learnt from the batches it ran: moving averages of the size
// and time of small batches (decode steps) and of prompt-sized ones give the
// two points of the line. It decides how much of a prompt may join a batch
// beside others' steps (StepScheduler): what that adds to their wait.
//
// On a CPU t(b) rises steeply (a 64-token prompt chunk costs about seven
// decode steps), so a chunk of a few milliseconds' worth keeps others'
// decode steps from waiting long. On a GPU, or any node whose batches are
// bound by reading the weights, t(b) is nearly flat: a decode step already
// takes tens of milliseconds, and a chunk of 64 tokens adds little to it,
// while chunks of 8 would take eight times as many passes over the weights
// to get a prompt through (the simulated 405B swarm delivered half the
// tokens that way).
//
// Pure: times are given.
#pragma once

namespace swarm::node {

class BatchCost {
 public:
  // Batches of at most this many tokens are decode-sized; of at least
  // kPromptSized, prompt-sized. Others say little about either end.
  static constexpr int kDecodeSized = 16;  // speculation verifies several tokens a step
  static constexpr int kPromptSized = 48;
  // A prompt's chunk beside others adds at most the larger of these to
  // their batch: a fixed time, or what a decode step costs (a decode step
  // beside a chunk takes at most about twice as long).
  static constexpr double kAddedSeconds = 0.003;
  static constexpr double kAddedShare = 1.0;
  static constexpr int kMinChunk = 8;

  // A batch of `tokens` took `seconds` of compute.
  void ran(int tokens, double seconds);

  // Tokens of a prompt that may join a batch beside others' steps: what adds
  // about the allowance above at the measured cost per token, at least
  // kMinChunk. 0 while no prompt-sized batch was measured (the caller's
  // default applies); with no decode-sized one yet, the allowance at the
  // prompt's average speed (the cost per token if batches had no base).
  int chunk_beside_others() const;

 private:
  struct Average {
    double tokens = 0, seconds = 0;
    bool seen = false;
    void add(int t, double s);
  };
  Average decode_, prompt_;
};

}  // namespace swarm::node
