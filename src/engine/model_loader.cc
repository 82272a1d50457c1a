#include "engine/model_loader.h"

#include <sys/stat.h>

#include "engine/gguf.h"

namespace swarm {

Result<ModelSource> open_model_source(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound(path + ": no such file or folder");
  if (S_ISDIR(st.st_mode))
    return Status::Unsupported(path + ": Hugging Face folders are not supported yet");
  return load_gguf_model(path);
}

}  // namespace swarm
