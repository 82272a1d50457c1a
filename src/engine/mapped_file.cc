#include "engine/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/unique_fd.h"

namespace swarm {
namespace {

constexpr uint64_t kHuge = 2ull << 20;

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

// Steps in which weights are read in when someone watches the progress: a
// multiple of 2 MiB, so no step splits a huge page.
constexpr size_t kProgressStep = 64ull << 20;

// Faults every page of [p, p + len) in: one call where the kernel has it, a read
// per page where it does not.
void populate(const void* p, size_t len) {
  if (::madvise(const_cast<void*>(p), len, MADV_POPULATE_READ) == 0) return;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < len; i += page) sink = sink + static_cast<const volatile uint8_t*>(p)[i];
}

// populate(), in steps that end on kProgressStep boundaries of the address
// space, telling `progress` the bytes done after each; one call without it.
void populate(const void* p, size_t len, const ProgressCallback& progress) {
  if (!progress) return populate(p, len);
  const uint8_t* base = static_cast<const uint8_t*>(p);
  for (size_t done = 0; done < len;) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(base + done);
    const size_t n = std::min<size_t>(len - done, kProgressStep - at % kProgressStep);
    populate(base + done, n);
    done += n;
    progress(done);
  }
}

}  // namespace

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
  // The kernel maps a file's cached huge pages (large folios) with one TLB entry
  // per 2 MiB only where the address and the file offset agree modulo 2 MiB; an
  // arbitrary address forces 4 KiB entries, and decode, which streams every
  // weight once per token, then spends a third of its time on TLB misses. So
  // reserve a span, place the mapping at the congruent address inside it, and
  // give back the rest.
  void* reserved = ::mmap(nullptr, map_len + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) {
    int saved_errno = errno;
    ::close(fd);
    return Status::IOError(path + ": cannot reserve address space: " + std::strerror(saved_errno));
  }
  const uintptr_t lo = reinterpret_cast<uintptr_t>(reserved);
  const uintptr_t at = lo + ((start % kHuge) + kHuge - lo % kHuge) % kHuge;
  void* base = ::mmap(reinterpret_cast<void*>(at), map_len, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd,
                      static_cast<off_t>(start));
  int saved_errno = errno;
  ::close(fd);
  if (base == MAP_FAILED) {
    ::munmap(reserved, map_len + kHuge);
    return Status::IOError(path + ": mmap failed: " + std::strerror(saved_errno));
  }
  if (at > lo) ::munmap(reserved, at - lo);
  if (lo + map_len + kHuge > at + map_len) ::munmap(reinterpret_cast<void*>(at + map_len), lo + kHuge - at);
  // Pages read in from now on come as huge pages where the file system allows.
  ::madvise(base, map_len, MADV_HUGEPAGE);
  region->map_base_ = base;
  region->map_length_ = map_len;
  region->data_ = static_cast<const uint8_t*>(base) + (offset - start);
  return region;
}

Result<std::unique_ptr<MappedRegion>> MappedRegion::Read(const std::string& path, uint64_t offset,
                                                         uint64_t length,
                                                         const ProgressCallback& progress) {
  auto size = file_size(path);
  if (!size.ok()) return size.status();
  if (offset > *size || length > *size - offset)
    return Status::Corruption(path + ": range [" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                              ") lies past the end of the file (" + std::to_string(*size) + " bytes)");
  std::unique_ptr<MappedRegion> region(new MappedRegion());
  region->anonymous_ = true;
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
    const uint64_t step = progress ? kProgressStep : 1ull << 30;
    const ssize_t n =
        ::pread(fd.get(), data + done, static_cast<size_t>(std::min<uint64_t>(length - done, step)),
                static_cast<off_t>(offset + done));
    if (n <= 0)
      return Status::IOError(path + ": read failed at byte " + std::to_string(offset + done) + ": " +
                             (n == 0 ? "unexpected end of file" : std::strerror(errno)));
    done += static_cast<uint64_t>(n);
    if (progress) progress(done);
  }
  ::mprotect(base, map_len, PROT_READ);
  region->data_ = data;
  return region;
}

Result<std::unique_ptr<MappedRegion>> MappedRegion::MapPopulated(const std::string& path,
                                                                 uint64_t offset, uint64_t length,
                                                                 const ProgressCallback& progress) {
  auto region = Map(path, offset, length);
  if (!region.ok() || (*region)->map_base_ == nullptr) return region;
  MappedRegion& r = **region;
  populate(r.map_base_, r.map_length_, progress);
  // The whole 2 MiB pages inside the mapping: the most that can be huge.
  const uintptr_t lo = reinterpret_cast<uintptr_t>(r.map_base_);
  const uintptr_t first = (lo + kHuge - 1) / kHuge * kHuge, last = (lo + r.map_length_) / kHuge * kHuge;
  if (last <= first) return region;
  const uint64_t possible = last - first;
  if (r.huge_mapped_bytes() * 10 >= possible * 9) return region;
  // Mostly 4 KiB pages: unmap ours, drop the cached copies nobody maps, read again.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return region;  // still a correct mapping, only slower
  ::madvise(r.map_base_, r.map_length_, MADV_DONTNEED);
  const off_t start = static_cast<off_t>(offset - (reinterpret_cast<uintptr_t>(r.data_) - lo));
  ::posix_fadvise(fd.get(), start, static_cast<off_t>(r.map_length_), POSIX_FADV_DONTNEED);
  populate(r.map_base_, r.map_length_, progress);
  return region;
}

uint64_t MappedRegion::huge_mapped_bytes() const {
  if (map_base_ == nullptr) return 0;
  return huge_mapped_bytes_in(map_base_, map_length_, anonymous_);
}

uint64_t huge_mapped_bytes_in(const void* begin, size_t length, bool anonymous) {
  // madvise() over part of a mapping splits it, so the range can span several
  // entries of smaps: add up those that start inside it.
  const uintptr_t lo = reinterpret_cast<uintptr_t>(begin), hi = lo + length;
  std::ifstream smaps("/proc/self/smaps");
  const char* field = anonymous ? "AnonHugePages:" : "FilePmdMapped:";
  std::string line;
  bool inside = false;
  uint64_t total = 0;
  while (std::getline(smaps, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') != std::string::npos &&
        line.find(':') > line.find(' ')) {
      const uintptr_t start = std::strtoull(line.c_str(), nullptr, 16);
      inside = start >= lo && start < hi;
      continue;
    }
    if (inside && line.rfind(field, 0) == 0) {
      std::istringstream in(line.substr(std::strlen(field)));
      uint64_t kb = 0;
      in >> kb;
      total += kb * 1024;
    }
  }
  return total;
}

MappedRegion::~MappedRegion() {
  if (map_base_ != nullptr) ::munmap(map_base_, map_length_);
}

}  // namespace swarm
