// A Hugging Face folder's tokenizer in the form GGUF stores it, the way
// llama.cpp's convert_hf_to_gguf.py stores it, so that llama.cpp and our own
// GGUF loader tokenize the converted file as the folder tokenizes:
//  - tokenizer.json (byte-level BPE) becomes a `gpt2` vocabulary: tokens by
//    id, ids missing up to config.json's vocab_size filled with "[PADn]"
//    (unused); added tokens are control tokens when marked special or when
//    they look special ("<|...|>"), else user-defined; merges as "a b"; and
//    `pre` names the pre-tokenizer the engine supports that splits a check
//    text exactly as tokenizer.json's own pre-tokenizer does (llama.cpp also
//    picks the name by tokenizing a check text, against a table of hashes);
//  - tokenizer.model (SentencePiece) becomes a `llama` vocabulary with
//    scores, pre "default";
//  - special ids: tokenizer_config.json's bos/eos/unk/sep/pad_token looked up
//    among tokenizer.json's added tokens, then config.json's *_token_id;
//    add_bos/add_eos from tokenizer.json's post-processor, then
//    tokenizer_config.json's add_bos_token/add_eos_token;
//  - the chat template from tokenizer_config.json's chat_template (a string,
//    or a list of named templates), else chat_template.jinja or
//    chat_template.json.
#pragma once

#include <string>

#include "engine/gguf_metadata.h"
#include "engine/status.h"

namespace swarm {

// `n_vocab`: config.json's vocab_size (the embedding's rows). Errors name the
// file and what is wrong in it.
Result<GgufVocab> read_hf_vocab(const std::string& dir, int n_vocab);

}  // namespace swarm
