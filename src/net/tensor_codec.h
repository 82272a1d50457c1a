// swarm.v1.Tensor <-> float32 rows. Hidden states travel as [n_tokens, d_model]
// in F32 (exact) or F16 (half the bytes; rounded to nearest even).
//
// Decoding validates everything a peer controls: the dtype is one we know, the
// shape is exactly the expected [rows, cols], and the byte count matches. A
// bad tensor is an InvalidArgument Status naming what is wrong, never a crash.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/status.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::net {

// Bytes per element of `dtype`; 0 for a value outside the enum.
size_t tensor_element_size(int dtype);

// Fills `out` with `rows` x `cols` floats from `data` in `dtype`.
void encode_tensor(const float* data, int64_t rows, int64_t cols, v1::Tensor::DType dtype,
                   v1::Tensor* out);

// Checks `t` and writes its rows x cols floats to `out`. `rows` < 0 accepts any
// row count (the count is then taken from the tensor; read it back with
// tensor_rows). `what` names the tensor in error messages ("Step.hidden").
Status decode_tensor(const v1::Tensor& t, int64_t rows, int64_t cols, std::vector<float>* out,
                     const char* what = "tensor");

}  // namespace swarm::net
