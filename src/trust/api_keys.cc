#include "trust/api_keys.h"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "trust/credits.h"
#include "trust/ledger.h"

namespace swarm::trust {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// The next word of `line` from `*at`, spaces skipped; "" at the end.
std::string_view next_word(std::string_view line, size_t* at) {
  while (*at < line.size() && is_space(line[*at])) ++*at;
  const size_t start = *at;
  while (*at < line.size() && !is_space(line[*at])) ++*at;
  return line.substr(start, *at - start);
}

Status at_line(int line, const std::string& field, const std::string& why) {
  return Status::InvalidArgument("line " + std::to_string(line) + ", " + field + ": " + why);
}

}  // namespace

Result<std::vector<ApiKeyLine>> parse_api_keys(std::string_view text) {
  std::vector<ApiKeyLine> out;
  std::set<std::string> seen;
  int number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (++number > static_cast<int>(kMaxKeyFileLines))
      return Status::InvalidArgument("more than " + std::to_string(kMaxKeyFileLines) + " lines");
    size_t at = 0;
    const std::string_view key = next_word(line, &at);
    if (key.empty() || key[0] == '#') continue;
    ApiKeyLine k;
    k.line = number;
    if (key.size() < kMinKeyLength || key.size() > kMaxKeyLength)
      return at_line(number, "KEY", "length " + std::to_string(key.size()) + " is not in [" +
                                        std::to_string(kMinKeyLength) + ", " +
                                        std::to_string(kMaxKeyLength) + "]");
    for (char c : key)
      if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
        return at_line(number, "KEY", "only printable ASCII characters without spaces");
    k.key = key;
    if (!seen.insert(k.key).second) return at_line(number, "KEY", "the same key is given twice");
    const std::string credits(next_word(line, &at));
    if (credits.empty()) return at_line(number, "CREDITS", "missing (KEY CREDITS [NAME])");
    errno = 0;
    char* stop = nullptr;
    const double value = std::strtod(credits.c_str(), &stop);
    if (stop != credits.c_str() + credits.size() || errno == ERANGE)
      return at_line(number, "CREDITS", "'" + credits + "' is not a number");
    auto micro = to_micro(value, "'" + credits + "'");
    if (!micro.ok()) return at_line(number, "CREDITS", micro.status().message());
    k.credits = *micro;
    while (at < line.size() && is_space(line[at])) ++at;
    std::string_view name = line.substr(at);
    while (!name.empty() && is_space(name.back())) name.remove_suffix(1);
    if (name.size() > kMaxKeyNameLength)
      return at_line(number, "NAME", "longer than " + std::to_string(kMaxKeyNameLength) + " characters");
    for (char c : name)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        return at_line(number, "NAME", "control characters are not allowed");
    k.name = name.empty() ? key_hash(k.key).substr(0, 12) : std::string(name);
    out.push_back(std::move(k));
  }
  return out;
}

Result<std::vector<ApiKeyLine>> load_api_keys(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  auto keys = parse_api_keys(text.str());
  if (!keys.ok()) return keys.status().annotate(path);
  return keys;
}

Result<ImportCounts> import_api_keys(Ledger& ledger, const std::vector<ApiKeyLine>& keys) {
  ImportCounts counts;
  for (const ApiKeyLine& k : keys) {
    auto added = ledger.add_account(k.key, k.name, k.credits);
    if (!added.ok()) return added.status();
    ++(*added ? counts.added : counts.kept);
  }
  std::vector<std::string> active;
  for (const ApiKeyLine& k : keys) active.push_back(k.key);
  SWARM_RETURN_IF_ERROR(ledger.set_active_keys(active));
  return counts;
}

}  // namespace swarm::trust
