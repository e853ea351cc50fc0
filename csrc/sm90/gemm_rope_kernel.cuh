// gemm_rope.h's kernel: gemm_sm90.cuh's pairs GEMM with a rotation for each group of pairs (RopeGroup),
// instantiated by gemm_rope.cu and, on the carried RMSNorm's x, gemm_rope_carried.cu.
#pragma once

#include "gemm_rope.h"
#include "gemm_sm90.cuh"

#include <cuda_bf16.h>
#include <cutlass/fast_math.h>

#include <type_traits>

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
  // RopeGroup<true>: x's (m, k / 64) partial sums of squares, x being the carried RMSNorm's un-normalised y
  // (gemm_residual.h), whose row scale then multiplies every accumulator first; else null
  float const* x_partials = nullptr;
  int m = 0, k = 0;
  float eps = 0.0f;
};

// RoPE over the weight's rows (in rotation-pair order) permuted within 64-row groups: accumulator column
// 64 g + 8 i + 2 q + e holds out's column 64 g + 16 q + 2 i + e (trm_fast/ops/linear_rope.py's `grouped_rows`),
// so that lane q of a quad holds out's 16 columns 64 g + 16 q onwards of its rows, and with them 8 consecutive
// entries of each table: two 16-byte loads of each, two 16-byte stores. Needs out's columns in whole groups, a
// head dim and `rotated` that groups do not straddle, 16-byte aligned tables and out.
//
// Where the head dim divides 64 (TRM's and HRM's 64) every group of a row turns by the same 8 entries, so `Row`
// holds them, loaded once per row before the tile's first store. Groups of other head dims load their own where
// theirs differ. Loaded per group, between stores, the tables cost 71 us of the 295 of sudoku_attn's QKV at batch
// 768 on an H100 (bench/NOTES.md, "RoPE's tables loaded once per row").
//
// Carried: x is the carried RMSNorm's un-normalised y with its partials (gemm_residual.h), and the row's scale
// multiplies every accumulator first, folded into the row's table entries (the rotation is linear); the
// epilogue's producer warp stages each tile's scales (RowScales). A separate instantiation (gemm_rope_carried.cu),
// as SwiGLU's (gemm_swiglu.cuh says what a run-time check cost).
template <bool Carried>
struct RopeGroup {
  using Arguments = RopeArguments;
  struct Entries {
    int position = 0;  // row % seq: the tables' row
    int dim = -1;      // the head dim the entries are for; -1: none loaded (a tile of v columns only)
    float cos[8], sin[8];  // Carried: times scale
  };
  struct ScaledEntries : Entries {
    float scale = 1.0f;
  };
  using Row = std::conditional_t<Carried, ScaledEntries, Entries>;
  using Stage = std::conditional_t<Carried, RowScales, NoStage>;
  static bool valid(Arguments const& args) {
    bool const tables = args.rotated == 0 || (args.cos != nullptr && args.sin != nullptr &&
                                              reinterpret_cast<uintptr_t>(args.cos) % 16 == 0 &&
                                              reinterpret_cast<uintptr_t>(args.sin) % 16 == 0);
    bool const partials = Carried ? row_scales_valid(args.x_partials, args.k) : args.x_partials == nullptr;
    return args.out != nullptr && reinterpret_cast<uintptr_t>(args.out) % 16 == 0 && args.ldo % 8 == 0 && tables &&
           args.seq.divisor > 0 && args.head_dim.divisor % 16 == 0 && args.n % kGroupColumns == 0 &&
           args.rotated % 16 == 0 && partials;
  }
  CUTLASS_DEVICE static int dim_of(Arguments const& args, int first) {
    int head, dim;
    args.head_dim(head, dim, first);
    return dim;
  }
  // the 8 entries of each table from pair dim / 2 on, at the row's position (times its scale where carried):
  // 32-byte aligned, the head dim being a multiple of 16; every position (row % seq) exists, past m too
  CUTLASS_DEVICE static void load(Arguments const& args, Row& r, int dim) {
    int const table = r.position * args.head_dim.divisor + dim / 2;
    float4 const* cos = reinterpret_cast<float4 const*>(args.cos + table);
    float4 const* sin = reinterpret_cast<float4 const*>(args.sin + table);
    float4 const c[2] = {cos[0], cos[1]}, s[2] = {sin[0], sin[1]};
    float const cs[8] = {c[0].x, c[0].y, c[0].z, c[0].w, c[1].x, c[1].y, c[1].z, c[1].w};
    float const sn[8] = {s[0].x, s[0].y, s[0].z, s[0].w, s[1].x, s[1].y, s[1].z, s[1].w};
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < 8; ++i) {
      if constexpr (Carried) {
        r.cos[i] = r.scale * cs[i];
        r.sin[i] = r.scale * sn[i];
      } else {
        r.cos[i] = cs[i];
        r.sin[i] = sn[i];
      }
    }
    r.dim = dim;
  }
  CUTLASS_DEVICE static void stage(Arguments const& args, Stage& scales, typename Stage::Scratch& scratch, int m0,
                                   int lane) {
    scales.fill(scratch, args.x_partials, args.m, args.k, args.eps, m0, lane);
  }
  CUTLASS_DEVICE static Row load_row(Arguments const& args, Stage const& stage, int row, int column) {
    Row r;
    int sequence;
    args.seq(sequence, r.position, row);
    int const first = grouped_first_column(column);
    if (first < args.rotated) load(args, r, dim_of(args, first));
    if constexpr (Carried) {
      r.scale = stage.of(row);
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < 8; ++i) {
        r.cos[i] *= r.scale;
        r.sin[i] *= r.scale;
      }
    }
    return r;
  }
  CUTLASS_DEVICE static void store_group(Arguments const& args, Row const& row_entries, int row, int column,
                                         float const (&a)[8], float const (&b)[8]) {
    int const first = grouped_first_column(column);
    cutlass::Array<BF16, 16> out;
    if (first < args.rotated) {
      Row r = row_entries;
      int const dim = dim_of(args, first);
      if (dim != r.dim) load(args, r, dim);  // never where the head dim divides 64
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < 8; ++i) {
        out[2 * i] = BF16(a[i] * r.cos[i] - b[i] * r.sin[i]);
        out[2 * i + 1] = BF16(b[i] * r.cos[i] + a[i] * r.sin[i]);
      }
    } else {
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < 8; ++i) {
        if constexpr (Carried) {
          out[2 * i] = BF16(row_entries.scale * a[i]);
          out[2 * i + 1] = BF16(row_entries.scale * b[i]);
        } else {
          out[2 * i] = BF16(a[i]);
          out[2 * i + 1] = BF16(b[i]);
        }
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
template <bool Carried>
struct GemmRope {
  using Gemm = GemmPairs<RopeGroup<Carried>, Shape<_128, _128, _64>, cutlass::gemm::KernelTmaWarpSpecializedPingpong>;

  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                                            int64_t ldo, const float* cos, const float* sin, int64_t seq,
                                            int64_t head_dim, int64_t rotated, const float* x_partials, float eps,
                                            int64_t m, int64_t n, int64_t k) {
    RopeArguments pair{static_cast<BF16*>(out), ldo, cos, sin, static_cast<int>(rotated),
                       cutlass::FastDivmod(static_cast<int>(seq)), cutlass::FastDivmod(static_cast<int>(head_dim)),
                       n, x_partials, static_cast<int>(m), static_cast<int>(k), eps};
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, n, k, pair);
  }
};

// gemm_rope_sm90 with x's partials (gemm_rope_carried.cu, compiled beside gemm_rope.cu).
cudaError_t gemm_rope_carried(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,
                              const float* cos, const float* sin, int64_t seq, int64_t head_dim, int64_t rotated,
                              const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                              cudaStream_t stream);

}  // namespace sm90
}  // namespace trm_fast
