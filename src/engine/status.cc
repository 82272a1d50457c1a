#include "engine/status.h"

namespace swarm {

std::string Status::ToString() const {
  const char* name = "OK";
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: name = "invalid argument"; break;
    case Code::kNotFound: name = "not found"; break;
    case Code::kCorruption: name = "corrupt"; break;
    case Code::kUnsupported: name = "unsupported"; break;
    case Code::kIOError: name = "I/O error"; break;
    case Code::kResourceExhausted: name = "resource exhausted"; break;
    case Code::kInternal: name = "internal error"; break;
    case Code::kUnavailable: name = "unavailable"; break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace swarm
