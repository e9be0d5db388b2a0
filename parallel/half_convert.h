// Bulk f32 <-> bf16/f16 conversions on host memory, for collectives that reduce 16-bit device
// buffers in f32 on the host (the host-staged GPU communicator). The scalar conversions are
// common/dtype.h's: bf16 is the upper half of a binary32 (rounded to nearest even going back),
// f16 is IEEE binary16 (exact widening incl. subnormals, round to nearest even narrowing, NaN
// stays NaN, overflow goes to inf).
#pragma once

#include <cstddef>

#include "common/dtype.h"

namespace tpserve::parallel {

// dst[i] = src[i] as f32 (exact). dtype: kF32, kBF16 or kF16.
void widen_to_f32(DType dtype, const void* src, float* dst, size_t count);

// dst[i] = src[i] rounded to nearest even in dtype. dtype: kF32, kBF16 or kF16.
void narrow_from_f32(DType dtype, const float* src, void* dst, size_t count);

}  // namespace tpserve::parallel
