#include "engine/model_loader.h"

#include <sys/stat.h>

#include "engine/gguf.h"
#include "engine/hf_loader.h"

namespace swarm {

Result<ModelSource> open_model_source(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::NotFound(path + ": no such file or folder");
  if (S_ISDIR(st.st_mode)) return load_hf_folder(path);
  return load_gguf_model(path);
}

}  // namespace swarm
