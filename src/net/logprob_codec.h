// TokenLogprob (engine/logprobs.h) on the wire (v1::TokenLogprob).
#pragma once

#include "engine/logprobs.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::net {

void encode_logprob(const TokenLogprob& lp, v1::TokenLogprob* out);
// At most kMaxTopLogprobs alternatives are kept, and only as many as both
// lists hold: a peer's message never sizes more than that.
TokenLogprob decode_logprob(const v1::TokenLogprob& in);

}  // namespace swarm::net
