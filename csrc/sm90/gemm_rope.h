// The attention's QKV projection with RoPE in its epilogue, on Hopper (sm_90a):
//
//   out = x @ w^T, then each pair of columns (2i, 2i + 1) below `rotated` turned by the angle of its row's
//   position (row % seq) and its index within the head, i = (column % head_dim) / 2:
//     out[2i] = a cos - b sin,  out[2i + 1] = b cos + a sin      (a, b: the fp32 accumulators)
//
// x (m, k), w (n, k), out (m, n) bf16 row-major with a leading dimension each (in elements, multiples of 8,
// pointers 16-byte aligned), cos and sin (seq, head_dim) fp32 contiguous, of which columns below head_dim / 2
// are read. That is RoPE with its rotation pairs adjacent: the caller orders the q and k rows of w so that a
// head's dims j and j + head_dim / 2 become its columns 2j and 2j + 1 (trm_fast/ops/linear_rope.py), which
// attention does not see, since q.k is the same sum in any order of a head's dims. One warp-specialised GEMM
// whose epilogue rotates and stores from registers (gemm_sm90.cuh's pairs epilogue): the projection is
// written once and RoPE never gets a pass of its own. Shapes: GemmRopeConfig.
//
// Built only where the build found CUTLASS's headers (setup.py); the caller checks every input and the device
// (compute capability 9.0) before it launches.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace trm_fast {

// The kernel shapes, chosen by the caller (trm_fast/ops/linear_rope.py's SM90_CONFIG).
enum class GemmRopeConfig : int {
  kPingpong128x128 = 0,              // one CTA per cluster
  kCooperative256x128Cluster1x2 = 1,  // two CTAs along N share x's tile by multicast
  kPingpong128x128Cluster2x2 = 2,     // 2x2 CTAs share x's tile along N and w's along M
  // one CTA per cluster, w's rows (already in rotation-pair order) permuted within 64-row groups so that each thread
  // loads 8 table entries and stores 16 columns at a time (gemm_rope_kernel.cuh's RopeGroup); n a multiple of 64,
  // head_dim and rotated multiples of 16
  kGroupsPingpong128x128 = 3,
};
constexpr int kGemmRopeConfigs = 4;
constexpr int kGemmRopeGroupsConfig = 3;

// Bytes of device workspace the launch needs (0 today; asked so that the caller never guesses).
size_t gemm_rope_sm90_workspace(GemmRopeConfig config, int64_t m, int64_t n, int64_t k);

// cudaErrorInvalidValue where CUTLASS cannot take the problem (alignment), else the launch's error.
cudaError_t gemm_rope_sm90(GemmRopeConfig config, const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                           int64_t ldo, const float* cos, const float* sin, int64_t seq, int64_t head_dim,
                           int64_t rotated, int64_t m, int64_t n, int64_t k, void* workspace, cudaStream_t stream);

}  // namespace trm_fast
