// The MLP's gate/up projection with SwiGLU in the up GEMM's epilogue, on Hopper (sm_90a):
//
//   out = silu(gate) * (x @ w_up^T)        x (m, k), w_up (n, k), gate (m, n), out (m, n)
//
// gate = x @ w_gate^T comes from cuBLAS beforehand (trm_fast/ops/linear_swiglu.py); this GEMM reads it in
// its epilogue while the other consumer warpgroup (ping-pong) or the next tile (cooperative) keeps the
// tensor cores busy, so the (m, 2n) gate_up activation is never written and SwiGLU never gets a pass of its
// own. bf16 operands, row-major with a leading dimension each (in elements, multiples of 8, pointers
// 16-byte aligned), fp32 accumulation; the up half is multiplied unrounded.
//
// Built from CUTLASS's sm90 collectives (TMA loads, warp-specialised mainloop, epilogue visitor tree)
// only where the build found CUTLASS's headers (setup.py); the caller checks every input and the device
// (compute capability 9.0) before it launches.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace trm_fast {

// The kernel shapes, chosen by the caller per problem (bench/gemm_tiles.py --sm90-only times each).
enum class GemmSm90Config : int {
  kPingpong128x128 = 0,     // two consumer warpgroups, each its own 128x128 tile, epilogues interleaved
  kCooperative128x256 = 1,  // two consumer warpgroups on one 128x256 tile, epilogue in 128x32 subtiles
  kCooperative128x256NoSource = 2,  // the same without the unread source C: no C stages, delayed TMA store
  kCooperative256x128 = 3,  // two consumer warpgroups on one 256x128 tile
  // The single-GEMM shape (gemm_swiglu_pairs.cu): w_up is then the (2n, k) gate/up weight with its rows
  // interleaved in pairs (row 2j gate_j, row 2j + 1 up_j), gate is not read, and one ping-pong GEMM (128x128
  // tiles) over all 2n rows writes h = silu(gate) * up from registers in an epilogue of our own.
  kPairsPingpong128x128 = 4,
  kPairsCooperative256x128Cluster1x2 = 5,  // the same in cooperative 256x128 tiles, x's tile multicast to 2 CTAs
  kPairsPingpong128x128Cluster2x2 = 6,     // ping-pong 128x128 tiles in 2x2 clusters, x's and w's tiles multicast
  // ping-pong 128x128 over the pairs permuted within 64-row groups (w_up then has 2n rounded up to 64 rows, see
  // gemm_swiglu_pairs.cuh's SwigluGroup), h stored 16 bytes at a time; out's leading dimension a multiple of 8
  kPairsGroupsPingpong128x128 = 7,
};
constexpr int kGemmSm90Configs = 8;
constexpr int kGemmSm90GroupsConfig = 7;  // the config whose weight is in groups, not interleaved pairs
constexpr int kGemmSm90FirstPairsConfig = 4;  // this one and every later config run over the interleaved pairs

// Bytes of device workspace the launch needs (0 today; asked so that the caller never guesses).
size_t gemm_swiglu_sm90_workspace(GemmSm90Config config, int64_t m, int64_t n, int64_t k);

// cudaErrorInvalidValue where CUTLASS cannot take the problem (alignment), else the launch's error.
cudaError_t gemm_swiglu_sm90(GemmSm90Config config, const void* x, int64_t ldx, const void* w_up, int64_t ldw,
                             const void* gate, int64_t ldg, void* out, int64_t ldo, int64_t m, int64_t n, int64_t k,
                             void* workspace, cudaStream_t stream);

// For training: config 7's GEMM (ping-pong 128x128 over the grouped pairs w, (grouped rows of 2n, k)) writing the
// pre-activations as well, gate_up (m, 2n) with the gate's n columns first, rounded to bf16, and
// h = silu(gate) * up of those rounded values (m, n). Leading dimensions in elements, multiples of 8; n a multiple
// of 8; gate_up and h 16-byte aligned.
size_t gemm_swiglu_keep_sm90_workspace(int64_t m, int64_t n, int64_t k);
cudaError_t gemm_swiglu_keep_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* gate_up, int64_t ldgu,
                                  void* h, int64_t ldh, int64_t m, int64_t n, int64_t k, void* workspace,
                                  cudaStream_t stream);

}  // namespace trm_fast
