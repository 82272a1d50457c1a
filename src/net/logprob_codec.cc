#include "net/logprob_codec.h"

#include <algorithm>

namespace swarm::net {

void encode_logprob(const TokenLogprob& lp, v1::TokenLogprob* out) {
  out->set_token(lp.token);
  out->set_logprob(lp.logprob);
  for (const auto& [id, logprob] : lp.top) {
    out->add_top_ids(id);
    out->add_top_logprobs(logprob);
  }
}

TokenLogprob decode_logprob(const v1::TokenLogprob& in) {
  TokenLogprob lp;
  lp.token = in.token();
  lp.logprob = in.logprob();
  const int n = std::min({in.top_ids_size(), in.top_logprobs_size(), kMaxTopLogprobs});
  for (int i = 0; i < n; ++i) lp.top.emplace_back(in.top_ids(i), in.top_logprobs(i));
  return lp;
}

}  // namespace swarm::net
