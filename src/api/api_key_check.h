// API keys given on the command line (`--api-key KEY`, repeatable): keys the
// operator hands out that open the API without an account in the credits
// ledger, so nothing is held or charged for them (doc/http-api.md, "API
// keys"). Keys with credits come from --api-keys FILE and live in the ledger.
//
// A request carries its key as `Authorization: Bearer KEY` (OpenAI) or
// `X-Api-Key: KEY` (llama-server also accepts it); Bearer wins when both are
// sent.
#pragma once

#include <httplib.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace swarm {

// The key a request carries, or nullopt when it carries none.
std::optional<std::string> request_api_key(const httplib::Request& req);

// What --api-key accepts: 1 to 256 printable ASCII characters without spaces.
Status check_api_key_syntax(std::string_view key);

// A fixed set of keys, compared in constant time: only the keys' BLAKE2b-256
// hashes are kept, and a candidate's hash is compared with every one of them
// with sodium_memcmp, so neither the time taken nor an early exit tells an
// attacker how much of a guess was right.
class StaticApiKeys {
 public:
  StaticApiKeys() = default;
  explicit StaticApiKeys(const std::vector<std::string>& keys);
  bool empty() const { return hashes_.empty(); }
  bool contains(std::string_view key) const;

 private:
  std::vector<std::array<unsigned char, 32>> hashes_;
};

}  // namespace swarm
