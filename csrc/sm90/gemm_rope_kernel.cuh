// gemm_rope.h's kernel as a template over its tile shape, schedule and cluster: gemm_sm90.cuh's pairs GEMM with
// a rotation for its pair. Each shape is instantiated in a file of its own (gemm_rope_<shape>.cu), so that the
// build compiles them in parallel.
#pragma once

#include "gemm_rope.h"
#include "gemm_sm90.cuh"

#include <cuda_bf16.h>
#include <cutlass/fast_math.h>

namespace trm_fast {
namespace sm90 {

struct RopePair {
  struct Arguments {
    BF16* out = nullptr;
    int64_t ldo = 0;
    const float* cos = nullptr;  // (seq, head_dim): column i < head_dim / 2 is pair i's
    const float* sin = nullptr;
    int rotated = 0;  // columns below it (the q and k heads) turn
    // seq and head_dim as divisors: row % seq and column % head_dim by multiply and shift, where a division by a
    // run-time value is ~20 instructions and the epilogue takes two per pair (bench/NOTES.md, "QKV + RoPE on
    // CUTLASS")
    cutlass::FastDivmod seq{1}, head_dim{2};
    int64_t n = 0;  // out's columns (RopeGroup's check: whole groups)
  };
  static bool valid(Arguments const& args) {
    return args.out != nullptr && args.seq.divisor > 0 && args.head_dim.divisor > 0 &&
           args.head_dim.divisor % 2 == 0 && (args.rotated == 0 || (args.cos != nullptr && args.sin != nullptr));
  }
  CUTLASS_DEVICE static void store(Arguments const& args, int row, int column, float a, float b) {
    if (column < args.rotated) {
      int sequence, position, head, dim;
      args.seq(sequence, position, row);
      args.head_dim(head, dim, column);
      int const table = position * args.head_dim.divisor + dim / 2;
      float const c = args.cos[table], s = args.sin[table];
      float const turned_a = a * c - b * s;
      b = b * c + a * s;
      a = turned_a;
    }
    // column is even and ldo a multiple of 8: a 4-byte aligned pair
    *reinterpret_cast<__nv_bfloat162*>(args.out + row * args.ldo + column) = __floats2bfloat162_rn(a, b);
  }
};

// The same over the weight's rows permuted within 64-row groups (kGroupsPingpong128x128): accumulator column
// 64 g + 8 i + 2 q + e holds out's column 64 g + 16 q + 2 i + e (trm_fast/ops/linear_rope.py's `grouped_rows`),
// so that lane q of a quad holds out's 16 columns 64 g + 16 q onwards of its rows, and with them 8 consecutive
// entries of each table: two 16-byte loads of each, two 16-byte stores. Needs out's columns in whole groups, a
// head dim and `rotated` that groups do not straddle, 16-byte aligned tables and out.
struct RopeGroup {
  using Arguments = RopePair::Arguments;
  static bool valid(Arguments const& args) {
    bool const aligned = reinterpret_cast<uintptr_t>(args.out) % 16 == 0 && args.ldo % 8 == 0 &&
                         (args.rotated == 0 || (reinterpret_cast<uintptr_t>(args.cos) % 16 == 0 &&
                                                reinterpret_cast<uintptr_t>(args.sin) % 16 == 0));
    return RopePair::valid(args) && aligned && args.n % kGroupColumns == 0 && args.head_dim.divisor % 16 == 0 &&
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

template <class Tile, class MainloopSchedule, class Cluster = Shape<_1, _1, _1>, class Pair = RopePair>
struct GemmRope {
  using Gemm = GemmPairs<Pair, Tile, MainloopSchedule, Cluster>;

  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                                            int64_t ldo, const float* cos, const float* sin, int64_t seq,
                                            int64_t head_dim, int64_t rotated, int64_t m, int64_t n, int64_t k) {
    RopePair::Arguments pair{static_cast<BF16*>(out), ldo, cos, sin, static_cast<int>(rotated),
                             cutlass::FastDivmod(static_cast<int>(seq)),
                             cutlass::FastDivmod(static_cast<int>(head_dim)), n};
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, n, k, pair);
  }
};

}  // namespace sm90

// One shape's entry points, defined by its gemm_rope_<shape>.cu; the arguments after the name are the GemmRope
// instantiation (variadic: its template arguments hold commas).
#define TRM_FAST_GEMM_ROPE_SHAPE(name, ...)                                                                        \
  size_t gemm_rope_workspace_##name(int64_t m, int64_t n, int64_t k) {                                             \
    using G = __VA_ARGS__;                                                                                         \
    return G::Gemm::get_workspace_size(G::arguments(nullptr, k, nullptr, k, nullptr, n, nullptr, nullptr, 1, 2, 0, \
                                                    m, n, k));                                                     \
  }                                                                                                                \
  cudaError_t gemm_rope_##name(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,     \
                               const float* cos, const float* sin, int64_t seq, int64_t head_dim, int64_t rotated, \
                               int64_t m, int64_t n, int64_t k, void* ws, cudaStream_t stream) {                   \
    using G = __VA_ARGS__;                                                                                         \
    return sm90::run<typename G::Gemm>(                                                                            \
        G::arguments(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, m, n, k), ws, stream);            \
  }

}  // namespace trm_fast
