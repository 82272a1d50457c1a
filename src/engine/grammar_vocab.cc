#include "engine/grammar_vocab.h"

#include "engine/tokenizer.h"

namespace swarm {

std::shared_ptr<const GrammarVocab> GrammarVocab::from_tokenizer(const Tokenizer& tok) {
  std::vector<std::string> pieces;
  std::vector<bool> text;
  const int32_t n = tok.vocab_size();
  pieces.reserve(static_cast<size_t>(n));
  text.reserve(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    const TokenType t = tok.token_type(id);
    const bool is_text = t != TokenType::kControl && t != TokenType::kUnknown && t != TokenType::kUnused;
    pieces.push_back(is_text ? tok.token_to_piece(id) : std::string());
    text.push_back(is_text);
  }
  return from_pieces(std::move(pieces), std::move(text));
}

std::shared_ptr<const GrammarVocab> GrammarVocab::from_pieces(std::vector<std::string> pieces,
                                                              std::vector<bool> is_text) {
  auto v = std::make_shared<GrammarVocab>();
  v->pieces = std::move(pieces);
  v->is_text = std::move(is_text);
  v->is_text.resize(v->pieces.size(), false);
  for (size_t id = 0; id < v->pieces.size(); ++id) {
    // An empty piece would let the grammar stand still forever.
    if (v->pieces[id].empty()) v->is_text[id] = false;
    if (v->is_text[id]) v->trie.add(v->pieces[id], static_cast<int32_t>(id));
  }
  return v;
}

}  // namespace swarm
