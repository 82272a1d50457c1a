#include "net/model_id_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "net/merkle.h"

namespace swarm::net {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string absolute_of(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::absolute(path, ec);
  return ec ? path : p.lexically_normal().string();
}

Result<FileStamp> stamp(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::IOError(path + ": " + std::strerror(errno));
  FileStamp s;
  s.path = absolute_of(path);
  s.size = static_cast<uint64_t>(st.st_size);
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  s.inode = static_cast<uint64_t>(st.st_ino);
  return s;
}

// The entry, or nullopt; nlohmann's accessors throw on a wrong type, so the
// caller catches.
std::optional<CacheEntry> parse_entry(const json& j, const std::vector<FileStamp>& stamps) {
  if (!j.is_object() || j.value("format", "") != kModelIdCacheFormat) return std::nullopt;
  const json& files = j.at("files");
  if (!files.is_array() || files.size() != stamps.size()) return std::nullopt;
  for (size_t i = 0; i < stamps.size(); ++i) {
    const json& f = files[i];
    FileStamp s;
    s.path = f.at("path").get<std::string>();
    s.size = f.at("size").get<uint64_t>();
    s.mtime_ns = f.at("mtime_ns").get<int64_t>();
    s.inode = f.at("inode").get<uint64_t>();
    if (!(s == stamps[i])) return std::nullopt;
  }
  CacheEntry e;
  e.ids.model_id = j.at("model_id").get<std::string>();
  e.ids.layout_id = j.at("layout_id").get<std::string>();
  const json& tensors = j.at("tensors");
  if (!tensors.is_array()) return std::nullopt;
  e.tensors.reserve(tensors.size());
  for (const json& t : tensors) {
    if (!t.is_array() || t.size() != 2) return std::nullopt;
    TensorLeaf leaf;
    leaf.name = t[0].get<std::string>();
    if (!digest_from_hex(t[1].get<std::string>(), &leaf.hash)) return std::nullopt;
    e.tensors.push_back(std::move(leaf));
  }
  return e;
}

}  // namespace

Result<std::vector<FileStamp>> stamp_model_files(const ModelSource& source) {
  std::vector<std::string> paths;
  if (source.format == "hf") paths.push_back(source.path + "/config.json");
  if (source.format == "gguf" && source.files.empty()) paths.push_back(source.path);
  paths.insert(paths.end(), source.files.begin(), source.files.end());
  std::vector<FileStamp> stamps;
  for (const std::string& p : paths) {
    auto s = stamp(p);
    if (!s.ok()) return s.status();
    stamps.push_back(*s);
  }
  return stamps;
}

std::string cache_path_beside(const ModelSource& source) {
  if (source.format == "hf") return source.path + "/.swarm-id";
  return (source.files.empty() ? source.path : source.files[0]) + ".swarm-id";
}

std::string cache_path_fallback(const ModelSource& source) {
  std::string dir;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (xdg != nullptr && xdg[0] == '/')
    dir = std::string(xdg) + "/swarm";
  else if (home != nullptr && home[0] == '/')
    dir = std::string(home) + "/.cache/swarm";
  else
    return "";
  const std::string model =
      absolute_of(source.format == "gguf" && !source.files.empty() ? source.files[0] : source.path);
  Blake2b256 h;
  h.update(model.data(), model.size());
  return dir + "/" + digest_hex(h.final()).substr(0, 32) + ".swarm-id";
}

std::optional<CacheEntry> read_model_id_cache(const std::string& path,
                                              const std::vector<FileStamp>& stamps) {
  struct stat st;
  // Someone else's file (planted in a shared folder such as /tmp) is not ours to trust.
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() ||
      static_cast<uint64_t>(st.st_size) > kMaxModelIdCacheBytes)
    return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  const json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  try {
    return parse_entry(j, stamps);
  } catch (const std::exception&) {
    return std::nullopt;  // a field missing or of the wrong type
  }
}

std::string model_id_cache_json(const std::vector<FileStamp>& stamps,
                                const ModelIdentity& identity) {
  json files = json::array();
  for (const FileStamp& s : stamps)
    files.push_back(
        {{"path", s.path}, {"size", s.size}, {"mtime_ns", s.mtime_ns}, {"inode", s.inode}});
  json tensors = json::array();
  for (const TensorLeaf& t : identity.tensors)
    tensors.push_back(json::array({t.name, digest_hex(t.hash)}));
  const json j = {{"format", kModelIdCacheFormat},
                  {"files", files},
                  {"model_id", identity.ids.model_id},
                  {"layout_id", identity.ids.layout_id},
                  {"tensors", tensors}};
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Status write_model_id_cache(const std::string& path, const std::vector<FileStamp>& stamps,
                            const ModelIdentity& identity, bool make_folder) {
  const fs::path target(path);
  std::error_code ec;
  const std::string folder = target.has_parent_path() ? target.parent_path().string() : ".";
  if (make_folder) {
    fs::create_directories(folder, ec);
    if (ec) return Status::IOError(folder + ": " + ec.message());
  }
  // A folder nobody may write to is left alone even by root, who could: its
  // owner made it read-only (a shared model store, say).
  struct stat st;
  if (::stat(folder.c_str(), &st) == 0 && (st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0)
    return Status::IOError(folder + ": the folder is read-only");
  std::random_device rd;
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd());
  const std::string text = model_id_cache_json(stamps, identity);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError(tmp + ": " + std::strerror(errno));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  const bool closed = ::close(fd) == 0;
  if (written != text.size() || !closed) {
    ::unlink(tmp.c_str());
    return Status::IOError(tmp + ": short write");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Status::IOError(path + ": " + std::strerror(err));
  }
  return Status::Ok();
}

}  // namespace swarm::net
