// matmul(): activation quantization, ISA dispatch, work split between threads, and
// the portable kernels, which spell out the canonical operation sequence of
// matmul_internal.h in plain C++. The SIMD kernels must match them bit for bit.
#include "engine/matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>
#include <vector>

#include "engine/fp16.h"
#include "engine/matmul_internal.h"
#include "engine/ops.h"
#include "engine/scratch_buffer.h"

namespace swarm {
namespace mm {
namespace {

size_t align64(size_t n) { return (n + 63) & ~size_t{63}; }

// Round half to even for |v| < 2^22, like cvtps2dq under the default MXCSR.
inline int round_even(float v) {
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float r = (v + magic) - magic;
  return static_cast<int>(r);
}

inline int8_t quant_one(float v, float id) {
  int q = round_even(v * id);
  if (q > 127) q = 127;
  if (q < -127) q = -127;
  return static_cast<int8_t>(q);
}

void quant_q8_0_portable(const float* x, int64_t cols, uint8_t* out, const ActLayout& l) {
  int8_t* qs = reinterpret_cast<int8_t*>(out + l.qs);
  float* d = reinterpret_cast<float*>(out + l.d);
  int32_t* sums = reinterpret_cast<int32_t*>(out + l.sums);
  for (int64_t b = 0; b < cols / kQK8_0; ++b) {
    const float* xb = x + b * kQK8_0;
    float amax = 0.0f;
    for (int i = 0; i < kQK8_0; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float db = amax / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    int32_t s = 0;
    for (int i = 0; i < kQK8_0; ++i) {
      qs[b * kQK8_0 + i] = quant_one(xb[i], id);
      s += qs[b * kQK8_0 + i];
    }
    d[b] = db;
    sums[b] = s;
  }
}

void quant_q8_k_portable(const float* x, int64_t cols, uint8_t* out, const ActLayout& l) {
  int8_t* qs = reinterpret_cast<int8_t*>(out + l.qs);
  float* d = reinterpret_cast<float*>(out + l.d);
  int16_t* bsums = reinterpret_cast<int16_t*>(out + l.sums);
  int16_t* sums32 = reinterpret_cast<int16_t*>(out + l.sums32);
  for (int64_t b = 0; b < cols / kQK_K; ++b) {
    const float* xb = x + b * kQK_K;
    int8_t* q = qs + b * kQK_K;
    float amax = 0.0f;
    for (int i = 0; i < kQK_K; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    const float db = amax / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    for (int i = 0; i < kQK_K; ++i) q[i] = quant_one(xb[i], id);
    d[b] = db;
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += q[g * 16 + i];
      bsums[b * 16 + g] = static_cast<int16_t>(s);
    }
    for (int g = 0; g < 8; ++g)
      sums32[b * 8 + g] = static_cast<int16_t>(bsums[b * 16 + 2 * g] + bsums[b * 16 + 2 * g + 1]);
  }
}

// ---- Portable kernels: one output element at a time, the canonical sequence verbatim.

template <typename Load>
float dot_float(Load load, const float* x, int64_t cols) {
  float a[16] = {};
  const int64_t padded = (cols + 15) / 16 * 16;
  for (int64_t i = 0; i < padded; ++i) {
    const float wi = i < cols ? load(i) : 0.0f;
    const float xi = i < cols ? x[i] : 0.0f;
    a[i % 16] = std::fma(wi, xi, a[i % 16]);
  }
  for (int s = 8; s >= 1; s /= 2)
    for (int j = 0; j < s; ++j) a[j] = a[j] + a[j + s];
  return a[0];
}

template <typename RowDot>
void for_each_output(const WeightMatrix& w, int64_t r0, int64_t r1, int64_t n_tokens, float* y,
                     int64_t ldy, RowDot dot) {
  const size_t rb = row_size(w.type, w.cols);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * rb;
    for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] = dot(row, t);
  }
}

void kernel_f32(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy, [&](const uint8_t* row, int64_t t) {
    const float* wr = reinterpret_cast<const float*>(row);
    return dot_float([&](int64_t i) { return wr[i]; }, a.f32(t), w.cols);
  });
}

void kernel_f16(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy, [&](const uint8_t* row, int64_t t) {
    const uint16_t* wr = reinterpret_cast<const uint16_t*>(row);
    return dot_float([&](int64_t i) { return fp16_to_fp32(wr[i]); }, a.f32(t), w.cols);
  });
}

void kernel_bf16(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy, [&](const uint8_t* row, int64_t t) {
    const uint16_t* wr = reinterpret_cast<const uint16_t*>(row);
    return dot_float([&](int64_t i) { return bf16_to_fp32(wr[i]); }, a.f32(t), w.cols);
  });
}

void kernel_q8_0(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy, [&](const uint8_t* row, int64_t t) {
    const BlockQ8_0* wb = reinterpret_cast<const BlockQ8_0*>(row);
    const int8_t* xq = a.qs(t);
    const float* xd = a.d(t);
    float acc = 0.0f;
    for (int64_t b = 0; b < w.cols / kQK8_0; ++b) {
      int32_t isum = 0;
      for (int i = 0; i < kQK8_0; ++i) isum += wb[b].qs[i] * xq[b * kQK8_0 + i];
      acc = std::fma(fp16_to_fp32(wb[b].d) * xd[b], static_cast<float>(isum), acc);
    }
    return acc;
  });
}

void kernel_q4_0(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy, [&](const uint8_t* row, int64_t t) {
    const BlockQ4_0* wb = reinterpret_cast<const BlockQ4_0*>(row);
    const int8_t* xq = a.qs(t);
    const float* xd = a.d(t);
    float acc = 0.0f;
    for (int64_t b = 0; b < w.cols / kQK4_0; ++b) {
      const int8_t* xb = xq + b * kQK4_0;
      int32_t isum = 0;
      for (int i = 0; i < 16; ++i) {
        isum += ((wb[b].qs[i] & 0xF) - 8) * xb[i];
        isum += ((wb[b].qs[i] >> 4) - 8) * xb[i + 16];
      }
      acc = std::fma(fp16_to_fp32(wb[b].d) * xd[b], static_cast<float>(isum), acc);
    }
    return acc;
  });
}

// Q4_K and Q5_K share everything but the fifth bit.
template <bool kFive>
float dot_k45(const uint8_t* row, const Acts& a, int64_t t, int64_t cols) {
  const int8_t* xq = a.qs(t);
  const float* xd = a.d(t);
  const int16_t* s32 = a.sums32(t);
  float acc = 0.0f;
  for (int64_t b = 0; b < cols / kQK_K; ++b) {
    uint16_t dh, dminh;
    const uint8_t *scales, *qs, *qh = nullptr;
    if constexpr (kFive) {
      const BlockQ5_K* blk = reinterpret_cast<const BlockQ5_K*>(row) + b;
      dh = blk->d, dminh = blk->dmin, scales = blk->scales, qs = blk->qs, qh = blk->qh;
    } else {
      const BlockQ4_K* blk = reinterpret_cast<const BlockQ4_K*>(row) + b;
      dh = blk->d, dminh = blk->dmin, scales = blk->scales, qs = blk->qs;
    }
    uint8_t sc[8], m[8];
    k4_scale_min(scales, sc, m);
    const int8_t* xb = xq + b * kQK_K;
    int32_t isum1 = 0, isum2 = 0;
    for (int c = 0; c < 4; ++c) {
      int32_t lo = 0, hi = 0;
      for (int i = 0; i < 32; ++i) {
        int ql = qs[32 * c + i] & 0xF, qu = qs[32 * c + i] >> 4;
        if constexpr (kFive) {
          ql |= ((qh[i] >> (2 * c)) & 1) << 4;
          qu |= ((qh[i] >> (2 * c + 1)) & 1) << 4;
        }
        lo += ql * xb[64 * c + i];
        hi += qu * xb[64 * c + 32 + i];
      }
      isum1 += sc[2 * c] * lo + sc[2 * c + 1] * hi;
    }
    for (int j = 0; j < 8; ++j) isum2 += m[j] * s32[b * 8 + j];
    const float s1 = xd[b] * fp16_to_fp32(dh);
    const float s2 = xd[b] * fp16_to_fp32(dminh);
    acc = std::fma(s1, static_cast<float>(isum1), acc);
    acc = std::fma(-s2, static_cast<float>(isum2), acc);
  }
  return acc;
}

void kernel_q4_k(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy,
                  [&](const uint8_t* row, int64_t t) { return dot_k45<false>(row, a, t, w.cols); });
}

void kernel_q5_k(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy,
                  [&](const uint8_t* row, int64_t t) { return dot_k45<true>(row, a, t, w.cols); });
}

void kernel_q6_k(const WeightMatrix& w, int64_t r0, int64_t r1, const Acts& a, int64_t n, float* y,
                 int64_t ldy) {
  for_each_output(w, r0, r1, n, y, ldy, [&](const uint8_t* row, int64_t t) {
    const int8_t* xq = a.qs(t);
    const float* xd = a.d(t);
    const int16_t* bs = a.bsums(t);
    float acc = 0.0f;
    for (int64_t b = 0; b < w.cols / kQK_K; ++b) {
      const BlockQ6_K* blk = reinterpret_cast<const BlockQ6_K*>(row) + b;
      const int8_t* xb = xq + b * kQK_K;
      int32_t g[16] = {};
      for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = blk->ql + 64 * h;
        const uint8_t* qh = blk->qh + 32 * h;
        for (int l = 0; l < 32; ++l) {
          const int q1 = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
          const int q2 = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
          const int q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
          const int q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
          const int e = 128 * h + l;
          g[e / 16] += q1 * xb[e];
          g[(e + 32) / 16] += q2 * xb[e + 32];
          g[(e + 64) / 16] += q3 * xb[e + 64];
          g[(e + 96) / 16] += q4 * xb[e + 96];
        }
      }
      int32_t isum = 0;
      for (int k = 0; k < 16; ++k) isum += blk->scales[k] * (g[k] - 32 * bs[b * 16 + k]);
      acc = std::fma(xd[b] * fp16_to_fp32(blk->d), static_cast<float>(isum), acc);
    }
    return acc;
  });
}

bool cpu_has_avx2() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__)
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

const IsaKernels* choose_kernels() {
  const char* forced = std::getenv("SWARM_ISA");
  if (forced != nullptr && *forced != '\0') {
    if (const IsaKernels* k = kernels_for(forced)) return k;
    std::fprintf(stderr, "SWARM_ISA=%s is not available on this CPU or build; choosing\n", forced);
  }
  if (const IsaKernels* k = kernels_for("avx512")) return k;
  if (const IsaKernels* k = kernels_for("avx2")) return k;
  return &portable_kernels();
}

const IsaKernels& active_kernels() {
  static const IsaKernels* k = choose_kernels();
  return *k;
}

KernelFn kernel_for(const IsaKernels& k, TensorType t) {
  switch (t) {
    case TensorType::F32:
      return k.f32;
    case TensorType::F16:
      return k.f16;
    case TensorType::BF16:
      return k.bf16;
    case TensorType::Q8_0:
      return k.q8_0;
    case TensorType::Q4_0:
      return k.q4_0;
    case TensorType::Q4_K:
      return k.q4_k;
    case TensorType::Q5_K:
      return k.q5_k;
    case TensorType::Q6_K:
      return k.q6_k;
    default:
      return nullptr;
  }
}

// Quantized activations live in a buffer owned by the calling thread; workers only
// read it during the call.
uint8_t* scratch(size_t bytes) {
  thread_local ScratchBuffer buf;
  return buf.get<uint8_t>(bytes);
}

}  // namespace

ActKind act_kind(TensorType t) {
  switch (t) {
    case TensorType::Q8_0:
    case TensorType::Q4_0:
      return ActKind::kQ8_0;
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      return ActKind::kQ8_K;
    default:
      return ActKind::kF32;
  }
}

ActLayout act_layout(ActKind kind, int64_t cols) {
  ActLayout l;
  const size_t n = static_cast<size_t>(cols);
  switch (kind) {
    case ActKind::kF32:
      l.stride = n * 4;
      break;
    case ActKind::kQ8_0: {
      const size_t nb = n / kQK8_0;
      l.qs = 0;
      l.d = align64(n);
      l.sums = l.d + align64(nb * 4);
      l.stride = l.sums + align64(nb * 4);
      break;
    }
    case ActKind::kQ8_K: {
      const size_t nb = n / kQK_K;
      l.qs = 0;
      l.d = align64(n);
      l.sums = l.d + align64(nb * 4);
      l.sums32 = l.sums + align64(nb * 16 * 2);
      l.stride = l.sums32 + align64(nb * 8 * 2);
      break;
    }
  }
  return l;
}

const IsaKernels& portable_kernels() {
  static const IsaKernels k = {
      "portable",          kernel_f32,      kernel_f16,       kernel_bf16, kernel_q8_0,
      kernel_q4_0,         kernel_q4_k,     kernel_q5_k,      kernel_q6_k, quant_q8_0_portable,
      quant_q8_k_portable, attend_portable, silu_mul_portable};
  return k;
}

void silu_mul_portable(const float* gate, const float* up, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = silu_mul_canonical(gate[i], up[i]);
}

void attend_portable(const float* q, const float* k, const float* v, int64_t stride, int len,
                     int head_dim, float scale, float* scores, float* out) {
  float mx = -INFINITY;
  for (int p = 0; p < len; ++p) {
    const float* kp = k + p * stride;
    float a[16] = {};
    for (int i = 0; i < (head_dim + 15) / 16 * 16; ++i)
      a[i % 16] = i < head_dim ? std::fma(q[i], kp[i], a[i % 16]) : std::fma(0.0f, 0.0f, a[i % 16]);
    for (int s = 8; s >= 1; s /= 2)
      for (int j = 0; j < s; ++j) a[j] = a[j] + a[j + s];
    scores[p] = a[0] * scale;
    mx = std::max(mx, scores[p]);
  }
  const float inv = softmax_in_place(scores, len, mx);
  for (int d = 0; d < head_dim; ++d) out[d] = 0;
  for (int p = 0; p < len; ++p) {
    const float w = scores[p] * inv;
    const float* vp = v + p * stride;
    for (int d = 0; d < head_dim; ++d) out[d] = std::fma(w, vp[d], out[d]);
  }
}

const IsaKernels* kernels_for(const char* isa) {
  const std::string_view s(isa);
  if (s == "portable") return &portable_kernels();
#if defined(__x86_64__)
  if (s == "avx2" && cpu_has_avx2()) return &avx2_kernels();
  if (s == "avx512" && cpu_has_avx512()) return &avx512_kernels();
#endif
  return nullptr;
}

namespace {

KernelFn checked_kernel(const IsaKernels& k, const WeightMatrix& w) {
  const KernelFn fn = kernel_for(k, w.type);
  const int bs = type_traits(w.type).block_size;
  if (fn == nullptr || bs == 0 || w.cols % bs != 0) {
    std::fprintf(stderr, "matmul: unsupported weight type %s or cols %lld\n", type_name(w.type),
                 static_cast<long long>(w.cols));
    std::abort();
  }
  return fn;
}

// x as the kernels for `w`'s type read it (see ActLayout), in the calling thread's
// scratch.
Acts prepare_acts(const IsaKernels& k, const WeightMatrix& w, const float* x, int64_t n_tokens,
                  ThreadPool& pool) {
  Acts a;
  a.kind = act_kind(w.type);
  a.layout = act_layout(a.kind, w.cols);
  a.cols = w.cols;
  if (a.kind == ActKind::kF32 && n_tokens == 1) {
    a.base = reinterpret_cast<const uint8_t*>(x);
    a.stride = a.layout.stride;
  } else if (a.kind == ActKind::kF32) {
    // Prefill: one copy of x that every thread's tiles share, rows on 64-byte
    // boundaries (a 512-bit load across two cache lines costs two) and a cache
    // line longer than a multiple of 4 KiB (so a tile's token rows do not all
    // fall into the same L1 sets). Made here once, not in every kernel call: the
    // threads call the kernel for many pieces of rows.
    const int64_t cols = w.cols;
    const size_t stride = static_cast<size_t>((cols + 15) / 16 * 16 + 16) * sizeof(float);
    uint8_t* buf = scratch(stride * static_cast<size_t>(n_tokens));
    for (int64_t t = 0; t < n_tokens; ++t)
      std::memcpy(buf + t * stride, x + t * cols, static_cast<size_t>(cols) * sizeof(float));
    a.base = buf;
    a.stride = stride;
  } else {
    uint8_t* buf = scratch(a.layout.stride * static_cast<size_t>(n_tokens));
    const QuantFn q = a.kind == ActKind::kQ8_0 ? k.quant_q8_0 : k.quant_q8_k;
    const ActLayout& l = a.layout;
    const int64_t cols = w.cols;
    auto quant_rows = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) q(x + t * cols, cols, buf + t * l.stride, l);
    };
    if (n_tokens >= 8 && pool.size() > 1) {
      pool.parallel_for(n_tokens, quant_rows);
    } else {
      quant_rows(0, n_tokens);
    }
    a.base = buf;
    a.stride = l.stride;
  }
  return a;
}

// Calls fn(c0, c1) on pieces of [0, n_chunks), on the calling thread alone where
// there is one thread or one chunk, else shared with stealing rather than fixed
// halves: the two cores of a VM often stream memory at different speeds (here one
// is a fifth slower). Who computes a row never changes its value.
void for_chunks(ThreadPool& pool, int64_t n_chunks,
                const std::function<void(int64_t, int64_t)>& fn) {
  if (n_chunks <= 0) return;
  if (pool.size() == 1 || n_chunks == 1) return fn(0, n_chunks);
  pool.parallel_for_balanced(n_chunks, fn);
}

}  // namespace

void matmul_with(const IsaKernels& k, const WeightMatrix& w, const float* x, int64_t n_tokens,
                 float* y, ThreadPool& pool) {
  if (n_tokens <= 0 || w.rows <= 0) return;
  const WeightMatrix* ws[] = {&w};
  float* const ys[] = {y};
  matmul_group_with(k, ws, ys, 1, x, n_tokens, pool);
}

void matmul_group_with(const IsaKernels& k, const WeightMatrix* const* ws, float* const* ys,
                       int count, const float* x, int64_t n_tokens, ThreadPool& pool) {
  if (n_tokens <= 0 || count <= 0) return;
  bool shared = true;
  for (int i = 1; i < count; ++i)
    shared = shared && ws[i]->cols == ws[0]->cols && act_kind(ws[i]->type) == act_kind(ws[0]->type);
  if (!shared) {
    for (int i = 0; i < count; ++i) matmul_with(k, *ws[i], x, n_tokens, ys[i], pool);
    return;
  }
  std::vector<KernelFn> fns(count);
  std::vector<int64_t> first_chunk(
      count + 1, 0);  // matrix i holds chunks [first_chunk[i], first_chunk[i + 1])
  const int64_t chunk = row_chunk(act_kind(ws[0]->type), n_tokens);
  for (int i = 0; i < count; ++i) {
    fns[i] = checked_kernel(k, *ws[i]);
    first_chunk[i + 1] = first_chunk[i] + (ws[i]->rows + chunk - 1) / chunk;
  }
  const Acts a = prepare_acts(k, *ws[0], x, n_tokens, pool);
  // Chunks [c0, c1) of the matrices laid end to end, split where one ends.
  auto piece = [&](int64_t c0, int64_t c1) {
    for (int i = 0; i < count && c0 < c1; ++i) {
      if (c0 >= first_chunk[i + 1]) continue;
      const int64_t end = std::min(c1, first_chunk[i + 1]);
      const WeightMatrix& w = *ws[i];
      fns[i](w, (c0 - first_chunk[i]) * chunk, std::min(w.rows, (end - first_chunk[i]) * chunk), a,
             n_tokens, ys[i], w.rows);
      c0 = end;
    }
  };
  for_chunks(pool, first_chunk[count], piece);
}

void swiglu_with(const IsaKernels& k, const WeightMatrix& gate, const WeightMatrix& up,
                 const float* x, int64_t n_tokens, float* g, float* u, ThreadPool& pool) {
  if (n_tokens <= 0 || gate.rows <= 0) return;
  if (gate.type != up.type || gate.rows != up.rows || gate.cols != up.cols) {
    matmul_with(k, gate, x, n_tokens, g, pool);
    matmul_with(k, up, x, n_tokens, u, pool);
    k.silu_mul(g, u, n_tokens * gate.rows, g);
    return;
  }
  const KernelFn fn = checked_kernel(k, gate);
  const Acts a = prepare_acts(k, gate, x, n_tokens, pool);
  const int64_t rows = gate.rows;
  auto piece = [&](int64_t r0, int64_t r1) {
    fn(gate, r0, r1, a, n_tokens, g, rows);
    fn(up, r0, r1, a, n_tokens, u, rows);
    for (int64_t t = 0; t < n_tokens; ++t)
      k.silu_mul(g + t * rows + r0, u + t * rows + r0, r1 - r0, g + t * rows + r0);
  };
  const int64_t chunk = row_chunk(act_kind(gate.type), n_tokens);
  for_chunks(pool, (rows + chunk - 1) / chunk,
             [&](int64_t c0, int64_t c1) { piece(c0 * chunk, std::min(rows, c1 * chunk)); });
}

}  // namespace mm

void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  mm::matmul_with(mm::active_kernels(), w, x, n_tokens, y, pool);
}

void matmul_group(const WeightMatrix* const* ws, float* const* ys, int count, const float* x,
                  int64_t n_tokens, ThreadPool& pool) {
  mm::matmul_group_with(mm::active_kernels(), ws, ys, count, x, n_tokens, pool);
}

void swiglu(const WeightMatrix& gate, const WeightMatrix& up, const float* x, int64_t n_tokens,
            float* g, float* u, ThreadPool& pool) {
  mm::swiglu_with(mm::active_kernels(), gate, up, x, n_tokens, g, u, pool);
}

const char* matmul_isa() { return mm::active_kernels().name; }

void silu_mul(const float* gate, const float* up, int64_t count, float* out) {
  mm::active_kernels().silu_mul(gate, up, count, out);
}

void attend_head(const float* q, const float* k, const float* v, int64_t stride, int len,
                 int head_dim, float scale, float* scores, float* out) {
  mm::active_kernels().attend(q, k, v, stride, len, head_dim, scale, scores, out);
}

}  // namespace swarm
