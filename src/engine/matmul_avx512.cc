// placeholder, replaced below
#if defined(__x86_64__)
#include "engine/matmul_internal.h"
namespace swarm::mm {
const IsaKernels& avx512_kernels() {
  static const IsaKernels k = [] { IsaKernels k = avx2_kernels(); k.name = "avx512"; return k; }();
  return k;
}
}  // namespace swarm::mm
#endif
