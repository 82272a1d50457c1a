// Fixed-order reductions across a workgroup's invocations, shared by the kernels.
//
// Determinism: a reduction over `width` lanes (a power of two, lanes grouped in
// aligned runs of `width` slots) is always the tree
//   for s = width/2, ..., 2, 1: a[j] = a[j] + a[j + s]  (j < s)
// the same tree the CPU kernels use (engine/matmul_internal.h). Lane j >= s
// computes a[j] + a[j - s], the same sum with its operands swapped, so every lane
// ends with the result and the bits never depend on which path ran.
//
// Two paths with the same result: steps with s below the subgroup size exchange
// values by subgroupShuffleXor (USE_SUBGROUP=1, set by the build for the subgroup
// variant), the others go through shared memory. A slot is an invocation's place
// in that tree; with subgroups it is numbered by subgroup so that slot ^ s is in
// the same subgroup for s < gl_SubgroupSize (pipelines are created with full
// subgroups, so the slots are 0 .. WG_SIZE-1).
//
// The includer defines WG_SIZE (its local_size_x) before including this file.
#if USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

shared float reduce_f[WG_SIZE];
shared uint reduce_u[WG_SIZE];

uint reduce_slot() {
#if USE_SUBGROUP
  return gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
#else
  return gl_LocalInvocationIndex;
#endif
}

// Must be reached by every invocation of the workgroup (it has barriers).
float tree_sum(float a, uint slot, uint width) {
  precise float v = a;
  for (uint s = width >> 1; s >= 1u; s >>= 1) {
#if USE_SUBGROUP
    if (s < gl_SubgroupSize) {
      v = v + subgroupShuffleXor(v, s);
      continue;
    }
#endif
    barrier();  // the previous step's readers are done with reduce_f
    reduce_f[slot] = v;
    barrier();
    v = v + reduce_f[slot ^ s];
  }
  return v;
}

// max is exact in any order; the tree only keeps it cheap.
float tree_max(float a, uint slot, uint width) {
  float v = a;
  for (uint s = width >> 1; s >= 1u; s >>= 1) {
#if USE_SUBGROUP
    if (s < gl_SubgroupSize) {
      v = max(v, subgroupShuffleXor(v, s));
      continue;
    }
#endif
    barrier();
    reduce_f[slot] = v;
    barrier();
    v = max(v, reduce_f[slot ^ s]);
  }
  return v;
}

// The larger value, and of equal values the smaller index: the first maximum,
// whatever the order of the tree.
void better(inout float v, inout uint i, float ov, uint oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

void tree_argmax(inout float v, inout uint i, uint slot, uint width) {
  for (uint s = width >> 1; s >= 1u; s >>= 1) {
#if USE_SUBGROUP
    if (s < gl_SubgroupSize) {
      const float ov = subgroupShuffleXor(v, s);
      const uint oi = subgroupShuffleXor(i, s);
      better(v, i, ov, oi);
      continue;
    }
#endif
    barrier();
    reduce_f[slot] = v;
    reduce_u[slot] = i;
    barrier();
    better(v, i, reduce_f[slot ^ s], reduce_u[slot ^ s]);
  }
}
