#include "api/logprobs_json.h"

namespace swarm {
namespace {

using OJson = nlohmann::ordered_json;

OJson bytes_of(const std::string& piece) {
  OJson b = OJson::array();
  for (unsigned char c : piece) b.push_back(static_cast<int>(c));
  return b;
}

OJson token_entry(const Tokenizer& tok, int32_t id, float logprob) {
  const std::string piece = tok.token_to_piece(id);
  return {{"token", piece}, {"logprob", logprob}, {"bytes", bytes_of(piece)}};
}

}  // namespace

OJson chat_logprob(const Tokenizer& tok, const TokenLogprob& lp) {
  OJson e = token_entry(tok, lp.token, lp.logprob);
  OJson top = OJson::array();
  for (const auto& [id, logprob] : lp.top) top.push_back(token_entry(tok, id, logprob));
  e["top_logprobs"] = std::move(top);
  return e;
}

OJson chat_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps, bool with_refusal) {
  OJson content = OJson::array();
  for (const TokenLogprob& lp : lps) content.push_back(chat_logprob(tok, lp));
  OJson out = {{"content", std::move(content)}};
  if (with_refusal) out["refusal"] = nullptr;
  return out;
}

OJson native_probabilities(const Tokenizer& tok, const std::vector<TokenLogprob>& lps) {
  OJson out = OJson::array();
  auto entry = [&](int32_t id, float logprob) {
    const std::string piece = tok.token_to_piece(id);
    return OJson{{"id", id}, {"token", piece}, {"bytes", bytes_of(piece)}, {"logprob", logprob}};
  };
  for (const TokenLogprob& lp : lps) {
    OJson e = entry(lp.token, lp.logprob);
    OJson top = OJson::array();
    for (const auto& [id, logprob] : lp.top) top.push_back(entry(id, logprob));
    e["top_logprobs"] = std::move(top);
    out.push_back(std::move(e));
  }
  return out;
}

void CompletionLogprobs::push(int32_t token, OJson logprob, OJson top) {
  const std::string piece = tok_.token_to_piece(token);
  tokens_.push_back(piece);
  token_logprobs_.push_back(std::move(logprob));
  top_.push_back(std::move(top));
  offsets_.push_back(offset_);
  // Control tokens (BOS) are left out of the text.
  if (tok_.token_type(token) != TokenType::kControl) offset_ += static_cast<int64_t>(piece.size());
}

void CompletionLogprobs::add_unscored(int32_t token) { push(token, nullptr, nullptr); }

void CompletionLogprobs::add(const TokenLogprob& lp) {
  // As OpenAI's: the most likely `n`, and the chosen token whether or not it is
  // among them (so up to n + 1 entries).
  OJson top = OJson::object();
  for (const auto& [id, logprob] : lp.top) {
    const std::string piece = tok_.token_to_piece(id);
    if (!top.contains(piece)) top[piece] = logprob;
  }
  const std::string chosen = tok_.token_to_piece(lp.token);
  if (!top.contains(chosen)) top[chosen] = lp.logprob;
  push(lp.token, lp.logprob, std::move(top));
}

OJson CompletionLogprobs::take() {
  OJson out = {{"tokens", std::move(tokens_)},
               {"token_logprobs", std::move(token_logprobs_)},
               {"top_logprobs", std::move(top_)},
               {"text_offset", std::move(offsets_)}};
  tokens_ = token_logprobs_ = top_ = offsets_ = OJson::array();
  return out;
}

}  // namespace swarm
