// Fused residual add + RMSNorm (post-norm, no weight), forward and backward.
//
//   forward:   s = x + delta,  rstd = 1 / sqrt(mean(s^2) + eps),  y = s * rstd
//   backward:  ds = rstd * (dy - y * mean(dy * y)),  dx = ddelta = ds
//
// Every tensor is seen as (batch, rows, n): the norm runs over n. Strides are in elements and
// given per tensor; rstd is contiguous fp32 (batch * rows values). Math is fp32 throughout.
//
// Two kernels, chosen by the caller (trm_fast/ops/rms_norm.py), which also checks every input:
// the launchers trust it.
//   rows:    the n axis is contiguous (stride 1) in every tensor, n is a multiple of the 16-byte
//            vector (8 bf16 or 4 fp32), n <= kRowsMaxN, pointers and strides 16-byte aligned.
//            One warp per row, 16-byte loads.
//   strided: any strides. One thread per row, walking its n entries; coalesced when the rows
//            axis has stride 1 (MLP-t's transposed view), since a warp then reads 32
//            neighbouring rows at each step.
//
// Each launcher returns the CUDA error of its launch (cudaSuccess when it went out).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace trm_fast {

enum class DType : int { kFloat32 = 0, kBFloat16 = 1 };

// Element strides of one (batch, rows, n) tensor.
struct Strides {
  int64_t batch, row, col;
};

// The widest row the rows kernel holds in registers (TRM's hidden size).
constexpr int64_t kRowsMaxN = 512;

cudaError_t add_rms_norm_rows_fwd(DType dtype, const void* x, Strides sx, const void* delta, Strides sd,
                                  void* y, Strides sy, float* rstd, int64_t batch, int64_t rows, int64_t n,
                                  float eps, cudaStream_t stream);

cudaError_t add_rms_norm_rows_bwd(DType dtype, const void* dy, Strides sdy, const void* y, Strides sy,
                                  const float* rstd, void* ds, Strides sds, int64_t batch, int64_t rows,
                                  int64_t n, cudaStream_t stream);

cudaError_t add_rms_norm_strided_fwd(DType dtype, const void* x, Strides sx, const void* delta, Strides sd,
                                     void* y, Strides sy, float* rstd, int64_t batch, int64_t rows, int64_t n,
                                     float eps, cudaStream_t stream);

cudaError_t add_rms_norm_strided_bwd(DType dtype, const void* dy, Strides sdy, const void* y, Strides sy,
                                     const float* rstd, void* ds, Strides sds, int64_t batch, int64_t rows,
                                     int64_t n, cudaStream_t stream);

}  // namespace trm_fast
