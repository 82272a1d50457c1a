#include "api/api_key_check.h"

#include <sodium.h>

#include "api/request_billing.h"

namespace swarm {
namespace {

std::array<unsigned char, 32> hash_of(std::string_view key) {
  std::array<unsigned char, 32> h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(key.data()),
                     key.size(), nullptr, 0);
  return h;
}

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

}  // namespace

std::optional<std::string> request_api_key(const httplib::Request& req) {
  if (auto bearer = bearer_key(req)) return bearer;
  if (!req.has_header("X-Api-Key")) return std::nullopt;
  std::string key = trimmed(req.get_header_value("X-Api-Key"));
  if (key.empty()) return std::nullopt;
  return key;
}

Status check_api_key_syntax(std::string_view key) {
  if (key.empty() || key.size() > 256)
    return Status::InvalidArgument("an API key must have 1 to 256 characters, this one has " +
                                   std::to_string(key.size()));
  for (char c : key)
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
      return Status::InvalidArgument(
          "an API key may hold only printable ASCII characters without spaces");
  return Status::Ok();
}

StaticApiKeys::StaticApiKeys(const std::vector<std::string>& keys) {
  if (sodium_init() < 0) return;  // cannot happen after the process's first call
  for (const std::string& k : keys) hashes_.push_back(hash_of(k));
}

bool StaticApiKeys::contains(std::string_view key) const {
  if (hashes_.empty()) return false;
  const std::array<unsigned char, 32> h = hash_of(key);
  int found = 0;
  for (const auto& known : hashes_) found |= sodium_memcmp(known.data(), h.data(), h.size()) == 0;
  return found != 0;
}

}  // namespace swarm
