#include "engine/unicode.h"

#include <array>
#include <unordered_map>

namespace swarm::unicode {

size_t valid_char_len(std::string_view s) {
  if (s.empty()) return 0;
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t c = b(0);
  if (c < 0x80) return 1;
  size_t n;
  uint32_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (size_t i = 2; i < n; ++i)
    if ((b(i) & 0xC0) != 0x80) return 0;
  return n;
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = valid_char_len(s.substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t incomplete_tail(std::string_view s) {
  // A character is at most 4 bytes: look at the last 3 for a lead byte whose
  // sequence runs past the end.
  for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
    const auto c = static_cast<uint8_t>(s[s.size() - k]);
    if ((c & 0xC0) == 0x80) continue;  // continuation: keep looking back
    if (c < 0xC2 || c > 0xF4) return 0;
    const size_t need = utf8_len(c);
    if (need <= k) return 0;  // complete (or too long: not ours to hold)
    // Held back only if it can still become valid: pad with a continuation
    // byte that every lead byte accepts in second place and check the prefix.
    std::string probe(s.substr(s.size() - k));
    const uint8_t second = (c == 0xE0) ? 0xA0 : (c == 0xF0) ? 0x90 : 0x80;
    if (k == 1) probe.push_back(static_cast<char>(second));
    while (probe.size() < need) probe.push_back(static_cast<char>(0x80));
    return valid_char_len(probe) == need ? k : 0;
  }
  return 0;
}

void append_utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

struct ByteMap {
  std::array<std::string, 256> to_char;
  std::unordered_map<std::string, int> to_byte;

  ByteMap() {
    // GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves,
    // the other 68 to U+0100 onwards in byte order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      std::string s;
      append_utf8(printable ? static_cast<uint32_t>(b) : next++, &s);
      to_byte[s] = b;
      to_char[static_cast<size_t>(b)] = std::move(s);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to_char[b]; }

int unicode_to_byte(std::string_view ch) {
  const auto& m = byte_map().to_byte;
  auto it = m.find(std::string(ch));
  return it == m.end() ? -1 : it->second;
}

}  // namespace swarm::unicode
