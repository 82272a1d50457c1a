#include "engine/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "engine/unique_fd.h"

namespace swarm {

Result<uint64_t> file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return Status::IOError(path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Status::IOError(path + ": not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

Result<std::unique_ptr<MappedRegion>> MappedRegion::Map(const std::string& path, uint64_t offset,
                                                         uint64_t length) {
  auto size = file_size(path);
  if (!size.ok()) return size.status();
  if (offset > *size || length > *size - offset)
    return Status::Corruption(path + ": range [" + std::to_string(offset) + ", " +
                              std::to_string(offset + length) + ") lies past the end of the file (" +
                              std::to_string(*size) + " bytes)");
  std::unique_ptr<MappedRegion> region(new MappedRegion());
  region->offset_ = offset;
  region->length_ = length;
  if (length == 0) {
    static const uint8_t kEmpty = 0;
    region->data_ = &kEmpty;
    return region;
  }
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset / page * page;
  const size_t map_len = static_cast<size_t>(offset + length - start);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError(path + ": " + std::strerror(errno));
  void* base = ::mmap(nullptr, map_len, PROT_READ, MAP_PRIVATE, fd, static_cast<off_t>(start));
  int saved_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) return Status::IOError(path + ": mmap failed: " + std::strerror(saved_errno));
  region->map_base_ = base;
  region->map_length_ = map_len;
  region->data_ = static_cast<const uint8_t*>(base) + (offset - start);
  return region;
}

Result<std::unique_ptr<MappedRegion>> MappedRegion::Read(const std::string& path, uint64_t offset, uint64_t length) {
  auto size = file_size(path);
  if (!size.ok()) return size.status();
  if (offset > *size || length > *size - offset)
    return Status::Corruption(path + ": range [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                              ") lies past the end of the file (" + std::to_string(*size) + " bytes)");
  constexpr uint64_t kHuge = 2ull << 20;
  std::unique_ptr<MappedRegion> region(new MappedRegion());
  region->offset_ = offset;
  region->length_ = length;
  const size_t map_len = static_cast<size_t>((length + 2 * kHuge - 1) / kHuge * kHuge);
  void* base = ::mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return Status::ResourceExhausted(path + ": cannot allocate " + std::to_string(length) + " bytes");
  region->map_base_ = base;
  region->map_length_ = map_len;
  uint8_t* data = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(base) + kHuge - 1) / kHuge * kHuge);
  ::madvise(data, static_cast<size_t>(length), MADV_HUGEPAGE);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Status::IOError(path + ": " + std::strerror(errno));
  for (uint64_t done = 0; done < length;) {
    const ssize_t n = ::pread(fd.get(), data + done, static_cast<size_t>(std::min<uint64_t>(length - done, 1ull << 30)),
                              static_cast<off_t>(offset + done));
    if (n <= 0)
      return Status::IOError(path + ": read failed at byte " + std::to_string(offset + done) + ": " +
                             (n == 0 ? "unexpected end of file" : std::strerror(errno)));
    done += static_cast<uint64_t>(n);
  }
  ::mprotect(base, map_len, PROT_READ);
  region->data_ = data;
  return region;
}

MappedRegion::~MappedRegion() {
  if (map_base_ != nullptr) ::munmap(map_base_, map_length_);
}

}  // namespace swarm
