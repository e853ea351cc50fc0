// A projection with the residual add in its epilogue and the RMSNorm carried as a statistic, on Hopper (sm_90a):
//
//   y = x @ w^T + s_r * r        per row: s_r = rsqrt(mean(r_prev^2) + eps) from r's partials, or 1 without them
//   partials[row, g] = sum of y^2 over y's columns 64 g ... 64 g + 63, of y rounded to bf16
//
// The post-norm block normalises every sublayer's output, norm(y) = s y with s = rsqrt(mean(y^2) + eps), one
// number per row. A row's scale passes through the next GEMM, (diag(s) Y) W^T = diag(s) (Y W^T), so y need never
// be normalised in memory: this kernel writes y and its partial sums of squares, the next GEMM's epilogue (QKV +
// RoPE, gate/up + SwiGLU, or this one as the next residual) computes s from them and scales its accumulators, and
// the block's last output is normalised once where it becomes a latent (bench/NOTES.md, "The carried statistic").
// The partials, one per 64-column group summed in a fixed order by the reader, keep the result independent of
// the tile schedule, where atomics would not.
//
// x (m, k), w (n, k) with its rows permuted in 64-row groups (trm_fast/ops/carried_norm.py's `grouped_rows`:
// each thread then holds 16 adjacent columns of y), r and y (m, n) bf16 row-major with leading dimensions (in
// elements, multiples of 8; pointers 16-byte aligned), r's partials (m, n / 64) fp32 contiguous or null,
// partials (m, n / 64) fp32 contiguous; n a multiple of 64. y may be r itself (each thread reads its residual
// before it stores over it); partials may not be r's partials (other tiles of a row still read them). One
// ping-pong GEMM of 128x128 tiles, as the SwiGLU and RoPE GEMMs.
//
// Built only where the build found CUTLASS's headers (setup.py); the caller checks every input and the device
// (compute capability 9.0) before it launches.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace trm_fast {

// Bytes of device workspace the launch needs (0 today; asked so that the caller never guesses).
size_t gemm_residual_sm90_workspace(int64_t m, int64_t n, int64_t k);

// cudaErrorInvalidValue where CUTLASS cannot take the problem (alignment, whole groups), else the launch's error.
cudaError_t gemm_residual_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* r, int64_t ldr,
                               const float* r_partials, void* y, int64_t ldy, float* partials, float eps, int64_t m,
                               int64_t n, int64_t k, void* workspace, cudaStream_t stream);

}  // namespace trm_fast
