// The gateway's --api-keys FILE: who may send requests, and the credits each
// key starts with (doc/trust.md, "Credits ledger"). One key a line:
//
//   # comment
//   KEY CREDITS [NAME]
//
// KEY: 16 to 256 printable characters without spaces (what clients send as
// `Authorization: Bearer KEY`); CREDITS: a finite number >= 0 (decimals allowed,
// counted to the micro-credit); NAME: the rest of the line, at most 64
// characters (default: the key's hash, first 12 hex digits). A key may appear
// once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace swarm::trust {

class Ledger;

inline constexpr size_t kMinKeyLength = 16, kMaxKeyLength = 256, kMaxKeyNameLength = 64;
inline constexpr size_t kMaxKeyFileLines = 1'000'000;

struct ApiKeyLine {
  std::string key, name;
  int64_t credits = 0;  // micro-credits
  int line = 0;         // 1-based, for messages
};

// Parses a file's text; InvalidArgument naming the line and the field at fault.
Result<std::vector<ApiKeyLine>> parse_api_keys(std::string_view text);
// Reads and parses `path`; errors name the file.
Result<std::vector<ApiKeyLine>> load_api_keys(const std::string& path);

struct ImportCounts {
  int added = 0, kept = 0;  // new accounts granted their credits; existing ones kept as they are
};
// Grants each new key its credits, once: a key already in `ledger` keeps its
// balance, so importing the same file again changes nothing. Keys no longer in
// the file are refused from then on (their balances stay, should they return).
Result<ImportCounts> import_api_keys(Ledger& ledger, const std::vector<ApiKeyLine>& keys);

}  // namespace swarm::trust
