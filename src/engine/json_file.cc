#include "engine/json_file.h"

#include <fstream>

namespace swarm {

namespace fs = std::filesystem;

Result<std::string> read_side_file(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return Status::NotFound(p.string() + ": no such file");
  const uintmax_t size = fs::file_size(p, ec);
  if (ec) return Status::IOError(p.string() + ": cannot stat: " + ec.message());
  if (size > kMaxSideFileBytes)
    return Status::Corruption(p.string() + ": " + std::to_string(size) + " bytes is too large");
  std::ifstream in(p, std::ios::binary);
  if (!in) return Status::IOError(p.string() + ": cannot open");
  std::string text(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(text.data(), static_cast<std::streamsize>(size)))
    return Status::IOError(p.string() + ": cannot read");
  return text;
}

Result<nlohmann::json> read_json_object(const fs::path& p) {
  Result<std::string> text = read_side_file(p);
  if (!text.ok()) return text.status();
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corruption(p.string() + ": invalid JSON");
  if (!j.is_object()) return Status::Corruption(p.string() + ": not a JSON object");
  return j;
}

Result<nlohmann::json> read_optional_json_object(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) return nlohmann::json::object();
  return read_json_object(p);
}

}  // namespace swarm
