// gemm_rope.h's kernel: gemm_sm90.cuh's pairs GEMM with a rotation for each group of pairs (RopeGroup),
// instantiated by gemm_rope.cu.
#pragma once

#include "gemm_rope.h"
#include "gemm_sm90.cuh"

#include <cuda_bf16.h>
#include <cutlass/fast_math.h>

namespace trm_fast {
namespace sm90 {

struct RopeArguments {
  BF16* out = nullptr;
  int64_t ldo = 0;
  const float* cos = nullptr;  // (seq, head_dim): column i < head_dim / 2 is pair i's
  const float* sin = nullptr;
  int rotated = 0;  // columns below it (the q and k heads) turn
  // seq and head_dim as divisors: row % seq and column % head_dim by multiply and shift, where a division by a
  // run-time value is ~20 instructions (bench/NOTES.md, "QKV + RoPE on CUTLASS")
  cutlass::FastDivmod seq{1}, head_dim{2};
  int64_t n = 0;  // out's columns: whole groups
};

// RoPE over the weight's rows (in rotation-pair order) permuted within 64-row groups: accumulator column
// 64 g + 8 i + 2 q + e holds out's column 64 g + 16 q + 2 i + e (trm_fast/ops/linear_rope.py's `grouped_rows`),
// so that lane q of a quad holds out's 16 columns 64 g + 16 q onwards of its rows, and with them 8 consecutive
// entries of each table: two 16-byte loads of each, two 16-byte stores. Needs out's columns in whole groups, a
// head dim and `rotated` that groups do not straddle, 16-byte aligned tables and out.
struct RopeGroup {
  using Arguments = RopeArguments;
  static bool valid(Arguments const& args) {
    bool const tables = args.rotated == 0 || (args.cos != nullptr && args.sin != nullptr &&
                                              reinterpret_cast<uintptr_t>(args.cos) % 16 == 0 &&
                                              reinterpret_cast<uintptr_t>(args.sin) % 16 == 0);
    return args.out != nullptr && reinterpret_cast<uintptr_t>(args.out) % 16 == 0 && args.ldo % 8 == 0 && tables &&
           args.seq.divisor > 0 && args.head_dim.divisor % 16 == 0 && args.n % kGroupColumns == 0 &&
           args.rotated % 16 == 0;
  }
  CUTLASS_DEVICE static void store_group(Arguments const& args, int row, int column, float const (&a)[8],
                                         float const (&b)[8]) {
    // column = 64 g + 2 q (PairsEpilogue): out's columns 64 g + 16 q onwards, pair i at 2 i and 2 i + 1
    int const first = (column / kGroupColumns) * kGroupColumns + (column % kGroupColumns) * 8;
    cutlass::Array<BF16, 16> out;
    if (first < args.rotated) {
      int sequence, position, head, dim;
      args.seq(sequence, position, row);
      args.head_dim(head, dim, first);
      // 8 entries from a multiple of 8: 32-byte aligned, the head dim being a multiple of 16
      int const table = position * args.head_dim.divisor + dim / 2;
      float4 const* cos = reinterpret_cast<float4 const*>(args.cos + table);
      float4 const* sin = reinterpret_cast<float4 const*>(args.sin + table);
      float4 const c[2] = {cos[0], cos[1]}, s[2] = {sin[0], sin[1]};
      float const cs[8] = {c[0].x, c[0].y, c[0].z, c[0].w, c[1].x, c[1].y, c[1].z, c[1].w};
      float const sn[8] = {s[0].x, s[0].y, s[0].z, s[0].w, s[1].x, s[1].y, s[1].z, s[1].w};
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < 8; ++i) {
        out[2 * i] = BF16(a[i] * cs[i] - b[i] * sn[i]);
        out[2 * i + 1] = BF16(b[i] * cs[i] + a[i] * sn[i]);
      }
    } else {
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < 8; ++i) {
        out[2 * i] = BF16(a[i]);
        out[2 * i + 1] = BF16(b[i]);
      }
    }
    uint4* dst = reinterpret_cast<uint4*>(args.out + row * args.ldo + first);
    uint4 const* src = reinterpret_cast<uint4 const*>(out.data());
    dst[0] = src[0];
    dst[1] = src[1];
  }
};

// ping-pong 128x128 tiles, one CTA per cluster: the mainloop of the plain GEMM that ran within 8% of cuBLAS
// (bench/NOTES.md, "The measuring stick")
struct GemmRope {
  using Gemm = GemmPairs<RopeGroup, Shape<_128, _128, _64>, cutlass::gemm::KernelTmaWarpSpecializedPingpong>;

  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                                            int64_t ldo, const float* cos, const float* sin, int64_t seq,
                                            int64_t head_dim, int64_t rotated, int64_t m, int64_t n, int64_t k) {
    RopeArguments pair{static_cast<BF16*>(out), ldo, cos, sin, static_cast<int>(rotated),
                       cutlass::FastDivmod(static_cast<int>(seq)), cutlass::FastDivmod(static_cast<int>(head_dim)),
                       n};
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, n, k, pair);
  }
};

}  // namespace sm90
}  // namespace trm_fast
