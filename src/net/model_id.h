// A model's identity on the network: the content hash of its header, so two
// nodes serve the same chain only if they hold the same weights' layout (the
// same architecture, tensor names, shapes and quantization types).
#pragma once

#include <string>

#include "engine/model_source.h"
#include "engine/status.h"

namespace swarm::net {

// Hex BLAKE2b-256 over the model's header bytes:
//  - GGUF: the file's bytes [0, start of the tensor data section): metadata and
//    tensor table (names, types, shapes, offsets);
//  - Hugging Face folder: config.json, then each safetensors file's header
//    (its 8-byte length and JSON), in ModelSource::files order.
// Each part is framed by its kind and length, so no two layouts hash alike by
// concatenation. Reads the files again; costs a few milliseconds.
Result<std::string> model_content_id(const ModelSource& source);

}  // namespace swarm::net
