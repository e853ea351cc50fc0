// A plain GEMM on Hopper (sm_90a) with CUTLASS's own epilogue: out = x @ w^T, bf16, stored through shared memory
// by TMA. Nothing is fused: it is the measuring stick for this folder's fused epilogues, whose GEMMs ran at
// 213-295 TFLOP/s where cuBLAS runs the same shapes at ~650 (bench/NOTES.md). If this GEMM, in the same mainloop
// shapes, runs near cuBLAS, the fused epilogues (register stores, the gate's loads) are the cost; if it does
// not, the mainloop shapes are.
//
// x (m, k), w (n, k), out (m, n) row-major with a leading dimension each (in elements, multiples of 8, pointers
// 16-byte aligned), fp32 accumulation. Built only where the build found CUTLASS's headers (setup.py); the
// caller checks every input and the device (compute capability 9.0) before it launches.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace trm_fast {

// The mainloop shapes of gemm_swiglu.h's configs 0 and 1, then two in clusters of two CTAs that share one
// operand's tile by TMA multicast, as cuBLAS's own kernels at these shapes do (nvjet ..._192x192_64x4_2x1_...
// and ..._256x128_64x4_1x2_..., in the engine's profile at batch 768): 128 FLOP per byte loaded, not 64 or 85.
enum class GemmPlainConfig : int {
  kPingpong128x128 = 0,              // two consumer warpgroups, each its own 128x128 tile
  kCooperative128x256 = 1,           // two consumer warpgroups on one 128x256 tile
  kCooperative256x128Cluster1x2 = 2,  // 256x128 tiles, two along N sharing x's tile
  kCooperative128x256Cluster2x1 = 3,  // 128x256 tiles, two along M sharing w's tile
};
constexpr int kGemmPlainConfigs = 4;

// Bytes of device workspace the launch needs.
size_t gemm_plain_sm90_workspace(GemmPlainConfig config, int64_t m, int64_t n, int64_t k);

// cudaErrorInvalidValue where CUTLASS cannot take the problem (alignment), else the launch's error.
cudaError_t gemm_plain_sm90(GemmPlainConfig config, const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                            int64_t ldo, int64_t m, int64_t n, int64_t k, void* workspace, cudaStream_t stream);

}  // namespace trm_fast
