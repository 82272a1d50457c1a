// The small files beside a model's weights (config.json, the shard index,
// tokenizer.json and its companions), read one way: a size limit so a hostile
// folder cannot make us allocate without bound, and errors naming the file.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/status.h"

namespace swarm {

// tokenizer.json of a 256k-token vocabulary is about 20 MB; nothing we read is near this.
constexpr uint64_t kMaxSideFileBytes = 256ull << 20;

// The whole file. NotFound when absent, Corruption when over the limit.
Result<std::string> read_side_file(const std::filesystem::path& p);

// The file parsed as a JSON object; Corruption naming the file if it is not one.
Result<nlohmann::json> read_json_object(const std::filesystem::path& p);

// As read_json_object, but an absent file is an empty object (optional files).
Result<nlohmann::json> read_optional_json_object(const std::filesystem::path& p);

}  // namespace swarm
