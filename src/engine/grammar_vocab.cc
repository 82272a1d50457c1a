#include "engine/grammar_vocab.h"

#include "engine/tokenizer.h"

namespace swarm {

std::shared_ptr<const GrammarVocab> GrammarVocab::from_tokenizer(const Tokenizer& tok) {
  auto v = std::make_shared<GrammarVocab>();
  const int32_t n = tok.vocab_size();
  v->pieces.reserve(static_cast<size_t>(n));
  v->is_text.reserve(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    const TokenType t = tok.token_type(id);
    const bool text = t != TokenType::kControl && t != TokenType::kUnknown && t != TokenType::kUnused;
    v->pieces.push_back(text ? tok.token_to_piece(id) : std::string());
    v->is_text.push_back(text && !v->pieces.back().empty());
  }
  return v;
}

}  // namespace swarm
