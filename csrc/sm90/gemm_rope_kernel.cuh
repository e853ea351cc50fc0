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

template <class Tile, class MainloopSchedule, class Cluster = Shape<_1, _1, _1>>
struct GemmRope {
  using Gemm = GemmPairs<RopePair, Tile, MainloopSchedule, Cluster>;

  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                                            int64_t ldo, const float* cos, const float* sin, int64_t seq,
                                            int64_t head_dim, int64_t rotated, int64_t m, int64_t n, int64_t k) {
    RopePair::Arguments pair{static_cast<BF16*>(out), ldo, cos, sin, static_cast<int>(rotated),
                             cutlass::FastDivmod(static_cast<int>(seq)),
                             cutlass::FastDivmod(static_cast<int>(head_dim))};
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
