// Opens whatever the user named as a model: a .gguf file or a Hugging Face folder.
#pragma once

#include <string>

#include "engine/model_source.h"
#include "engine/status.h"

namespace swarm {

Result<ModelSource> open_model_source(const std::string& path);

}  // namespace swarm
