// The MLP's gate/up projection with SwiGLU in the GEMM's epilogue, on Hopper (sm_90a):
//
//   h = silu(x @ w_gate^T) * (x @ w_up^T)        x (m, k), h (m, n)
//
// One CUTLASS ping-pong GEMM (128x128 tiles, TMA loads, two consumer warpgroups whose epilogues run under each
// other's mainloops) over the (2n, k) gate/up weight with its rows permuted in 64-row groups
// (trm_fast/ops/linear_swiglu.py's grouped_pairs, gemm_swiglu.cuh's SwigluGroup): each thread's accumulators hold
// gate/up pairs of eight adjacent columns of h, stored as one 16-byte vector. The (m, 2n) gate_up activation
// is never written, unless the training form asks for it. bf16 operands, row-major with a leading dimension
// each (in elements, multiples of 8; h and gate_up 16-byte aligned; n a multiple of 8), fp32 accumulation.
//
// The shapes that lost to it (cuBLAS's gate GEMM with the up GEMM's epilogue reading the gate, 2-byte stores
// over interleaved pairs, clusters) were deleted after bench/NOTES.md recorded them ("Gate/up + SwiGLU on
// CUTLASS's Hopper GEMM"). Built only where the build found CUTLASS's headers (setup.py); the caller checks
// every input and the device (compute capability 9.0) before it launches.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace trm_fast {

// Bytes of device workspace the launch needs (0 today; asked so that the caller never guesses).
size_t gemm_swiglu_sm90_workspace(int64_t m, int64_t n, int64_t k);

// h = SwiGLU of x @ w^T for the grouped weight w ((2n rounded up to 64 rows), k). With x_partials ((m, k / 64)
// fp32 contiguous, k a multiple of 64 up to 1,024; null: none), x is the carried RMSNorm's un-normalised y and
// SwiGLU takes its row's scale rsqrt(mean(y^2) + eps) times gate and up (gemm_residual.h). cudaErrorInvalidValue
// where CUTLASS cannot take the problem (alignment), else the launch's error.
cudaError_t gemm_swiglu_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* h, int64_t ldh,
                             const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                             cudaStream_t stream);

// For training: the same GEMM writing the pre-activations as well, gate_up (m, 2n) with the gate's n columns
// first, rounded to bf16, and h = silu(gate) * up of those rounded values. gate_up's leading dimension a
// multiple of 8.
size_t gemm_swiglu_keep_sm90_workspace(int64_t m, int64_t n, int64_t k);
cudaError_t gemm_swiglu_keep_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* gate_up, int64_t ldgu,
                                  void* h, int64_t ldh, int64_t m, int64_t n, int64_t k, void* workspace,
                                  cudaStream_t stream);

}  // namespace trm_fast
