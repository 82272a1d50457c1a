// What a drafter would have drafted at every point of a known text: for a
// question at each context length, no guess or how many of its drafts the
// text bears out before the first it does not. With greedy decoding a
// request's text is fixed, and so is this; the simulator replays it (a
// scenario's [speculation] trace, doc/simulation.md) to draft exactly as the
// real drafter did on the real text.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/status.h"
#include "pipeline/drafter.h"

namespace swarm {

// Entry i: `drafter` asked for up to `max_drafts` tokens after text[0, from +
// i), for every i with from + i < text.size(): -1 if it had no guess, else the
// number of its leading tokens equal to the text's next ones (the drafts a
// greedy last stage accepts; at most what is left of the text).
Result<std::vector<int>> draft_trace(Drafter& drafter, const std::vector<int32_t>& text, int from,
                                     int max_drafts);

}  // namespace swarm
