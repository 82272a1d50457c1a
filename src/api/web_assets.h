// The swarm page's files (web/ in the source tree), built into the binary:
// cmake/embed_files.cmake turns them into a C++ source at build time, so the
// gateway serves the page with nothing to download and no files to install.
#pragma once

#include <string_view>
#include <vector>

namespace swarm {

struct WebAsset {
  std::string_view path;  // relative to web/, e.g. "index.html"
  std::string_view content_type;
  std::string_view body;
};

// Every file of web/, in name order.
const std::vector<WebAsset>& web_assets();

}  // namespace swarm
