// UTF-8 helpers the tokenizers share, and GPT-2's byte <-> character mapping.
// Unicode categories (letters, numbers, spaces) are not here: the pre-tokenizer
// regexes get them from PCRE2.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace swarm::unicode {

// Length of the UTF-8 sequence that `lead` starts, from its high bits alone:
// 1 for ASCII and for bytes that cannot start a sequence (continuation bytes,
// 0xF8..0xFF), so that walking a string with it always advances.
inline size_t utf8_len(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

// Length of the valid UTF-8 character at s[0] (1..4), or 0 if s does not start
// with one (truncated, overlong, surrogate, above U+10FFFF, stray byte).
size_t valid_char_len(std::string_view s);

// True if all of `s` is valid UTF-8.
bool is_valid_utf8(std::string_view s);

// Number of bytes at the end of `s` that form the start of a valid but not yet
// complete character (0..3): what a streaming decoder must hold back.
size_t incomplete_tail(std::string_view s);

// Appends the UTF-8 encoding of code point `cp` (<= 0x10FFFF).
void append_utf8(uint32_t cp, std::string* out);

// GPT-2's byte-level alphabet: every byte maps to one printable character
// (" " -> "Ġ", "\n" -> "Ċ", ...), so any byte string is a string of vocabulary
// characters.
const std::string& byte_to_unicode(uint8_t b);
// The inverse for one UTF-8 character; -1 if the character is not in the alphabet.
int unicode_to_byte(std::string_view ch);

}  // namespace swarm::unicode
