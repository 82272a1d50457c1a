// A read-only memory mapping of part of a file. Weights stay where the file maps
// them: a node that serves layers 8..16 maps only the span holding those layers'
// tensors, so the rest of the file costs neither memory nor address space.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/progress.h"
#include "engine/status.h"

namespace swarm {

class MappedRegion {
 public:
  // Maps bytes [offset, offset + length) of `path`. The mapping starts at the page
  // boundary below `offset`; data() points at `offset` itself.
  static Result<std::unique_ptr<MappedRegion>> Map(const std::string& path, uint64_t offset,
                                                   uint64_t length);
  // Maps like Map() and reads the whole span in at once, asking for huge pages.
  // Where the file's cached pages are 4 KiB ones (a file written or read in small
  // pieces), those that no other process maps are dropped from the page cache and
  // read again, and come back as 2 MiB pages: with 4 KiB pages decode loses about
  // a fifth of its speed to TLB misses. Other mappers keep the pages they map.
  // `progress`, if set, hears the bytes read in so far, every 64 MiB (again
  // from 0 if the pages are read a second time).
  static Result<std::unique_ptr<MappedRegion>> MapPopulated(const std::string& path,
                                                            uint64_t offset, uint64_t length,
                                                            const ProgressCallback& progress = {});
  // Reads the same bytes into anonymous memory instead (llama.cpp's --no-mmap),
  // aligned and advised for transparent huge pages: decode streams every weight
  // once per token, and with 4 KiB file pages the TLB misses and the hardware
  // prefetchers' stops at page boundaries cost a large share of the bandwidth.
  // `progress` as for MapPopulated.
  static Result<std::unique_ptr<MappedRegion>> Read(const std::string& path, uint64_t offset,
                                                    uint64_t length,
                                                    const ProgressCallback& progress = {});
  ~MappedRegion();
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t offset() const { return offset_; }
  uint64_t length() const { return length_; }
  // Bytes of address space the mapping takes (length rounded out to pages).
  uint64_t mapped_bytes() const { return map_length_; }
  // Bytes of this mapping that 2 MiB page-table entries cover now, as the kernel
  // reports them in /proc/self/smaps (0 where it cannot be read).
  uint64_t huge_mapped_bytes() const;

 private:
  MappedRegion() = default;
  bool anonymous_ = false;
  void* map_base_ = nullptr;
  size_t map_length_ = 0;
  const uint8_t* data_ = nullptr;
  uint64_t offset_ = 0;
  uint64_t length_ = 0;
};

// Bytes of the mappings that start in [begin, begin + length) that 2 MiB
// page-table entries cover, as /proc/self/smaps reports them: AnonHugePages for
// anonymous memory, FilePmdMapped for a file's pages. 0 where it cannot be read.
uint64_t huge_mapped_bytes_in(const void* begin, size_t length, bool anonymous);

// Size of the file at `path`, or an IOError naming it.
Result<uint64_t> file_size(const std::string& path);

}  // namespace swarm
