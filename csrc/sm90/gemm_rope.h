// The attention's QKV projection with RoPE in its epilogue, on Hopper (sm_90a):
//
//   out = x @ w^T, then each pair of columns (2i, 2i + 1) below `rotated` turned by the angle of its row's
//   position (row % seq) and its index within the head, i = (column % head_dim) / 2:
//     out[2i] = a cos - b sin,  out[2i + 1] = b cos + a sin      (a, b: the fp32 accumulators)
//
// x (m, k), w (n, k), out (m, n) bf16 row-major with a leading dimension each (in elements, multiples of 8,
// pointers 16-byte aligned), cos and sin (seq, head_dim) fp32 contiguous and 16-byte aligned, of which columns
// below head_dim / 2 are read; n a multiple of 64, head_dim and rotated multiples of 16. That is RoPE with its
// rotation pairs adjacent: the caller orders the q and k rows of w so that a head's dims j and j + head_dim / 2
// become its columns 2j and 2j + 1, then permutes the rows within 64-row groups (trm_fast/ops/linear_rope.py's
// sm90_weight), which attention does not see, since q.k is the same sum in any order of a head's dims. One
// ping-pong GEMM (128x128 tiles) whose epilogue rotates and stores from registers, 16 columns and 8 table entries
// at a time (gemm_rope_kernel.cuh's RopeGroup): the projection is written once and RoPE never gets a pass of its
// own. The shapes that lost to this one (pairs without groups, clusters) were deleted after bench/NOTES.md
// recorded them ("QKV + RoPE on CUTLASS").
//
// Built only where the build found CUTLASS's headers (setup.py); the caller checks every input and the device
// (compute capability 9.0) before it launches.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace trm_fast {

// Bytes of device workspace the launch needs (0 today; asked so that the caller never guesses).
size_t gemm_rope_sm90_workspace(int64_t m, int64_t n, int64_t k);

// With x_partials ((m, k / 64) fp32 contiguous, k a multiple of 64 up to 1,024; null: none), x is the carried
// RMSNorm's un-normalised y and its row's scale rsqrt(mean(y^2) + eps) multiplies the projection before RoPE
// (gemm_residual.h). cudaErrorInvalidValue where CUTLASS cannot take the problem (alignment, whole groups), else
// the launch's error.
cudaError_t gemm_rope_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,
                           const float* cos, const float* sin, int64_t seq, int64_t head_dim, int64_t rotated,
                           const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                           cudaStream_t stream);

}  // namespace trm_fast
