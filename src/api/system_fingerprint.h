// OpenAI's `system_fingerprint`: which backend configuration produced an answer,
// so a client can tell when answers to the same request may differ. Ours names
// the model (its content hash where the server knows it, else its served name)
// and the build of this program (the source's git commit at configure time).
#pragma once

#include <string>
#include <string_view>

namespace swarm {

// The commit this program was built from ("unknown" outside a git checkout).
const char* build_id();

// "fp_" and 16 hex digits of a stable hash of `model_identity` and build_id():
// the same for every answer of one server, and of every server running the same
// build on the same model.
std::string system_fingerprint(std::string_view model_identity);

}  // namespace swarm
