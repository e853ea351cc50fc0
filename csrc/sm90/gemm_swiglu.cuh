// gemm_swiglu.h's kernels: gemm_sm90.cuh's pairs GEMM over the gate/up weight's rows permuted in 64-row groups,
// with an epilogue that turns each thread's gate/up accumulator pairs into h (SwigluGroup) or into h and the
// pre-activations (SwigluGroupKeep, for training). No gate round trip through memory, no shared-memory stage in
// the epilogue. gemm_swiglu.cu, gemm_swiglu_carried.cu and gemm_swiglu_keep.cu instantiate them, so that the
// build compiles them in parallel.
#pragma once

#include <type_traits>

#include "gemm_sm90.cuh"
#include "gemm_swiglu.h"

namespace trm_fast {
namespace sm90 {

// silu(g) = g / (1 + e^-g) in fp32, with the approximate division (a reciprocal and a multiply): the IEEE one
// compiles to a reciprocal, a range check (FCHK) and a call to a slow path per element, which made the epilogue
// cost half the GEMM (bench/NOTES.md, "The cheaper division timed"). Triton's sigmoid, which the other kernels
// use, divides the same way; both are within 2 ulp of the IEEE quotient before the product is rounded to bf16.
// For g below about -88 the denominator is infinite and the quotient 0, as silu's limit.
CUTLASS_DEVICE float silu(float g) { return __fdividef(g, 1.0f + __expf(-g)); }

// h from the weight's rows in groups: in each 64-row group g of the permuted
// weight, row 64 g + 8 i + 2 q is gate_j and the next row up_j for j = 32 g + 8 q + i (q = 0..3, i = 0..7;
// trm_fast/ops/linear_swiglu.py's `grouped_pairs` makes it, zero rows past n). Lane q of a quad then holds h's
// columns 32 g + 8 q ... + 7 of its rows, and stores them as one 16-byte vector.
//
// Carried: x is the carried RMSNorm's un-normalised y with its partials (gemm_residual.h), and the row's scale
// multiplies gate and up before SwiGLU, as if x had been normalised (a row scale passes through the GEMM); the
// epilogue's producer warp stages each tile's scales (RowScales). A separate instantiation
// (gemm_swiglu_carried.cu) rather than a run-time null check: the scale's loads and multiplies in every launch
// cost the plain form 53 us of its 381 at sudoku_attn's b768 on an H100
// (bench/results/2026-12-07_h100_7658573_gemm_tiles_sm90.jsonl against ..._fe9f4af_...).
template <bool Carried>
struct SwigluGroup {
  struct Arguments {
    BF16* h = nullptr;
    int64_t ldh = 0;
    int64_t n = 0;  // h's columns: the groups past them hold the weight's zero rows, never stored
    float const* x_partials = nullptr;  // Carried: x's (m, k / 64) partial sums of squares; else null
    int m = 0, k = 0;
    float eps = 0.0f;
  };
  struct Scale {
    float scale;
  };
  using Row = std::conditional_t<Carried, Scale, NoRow::Row>;
  using Stage = std::conditional_t<Carried, RowScales, NoStage>;
  static bool valid(Arguments const& args) {
    bool const partials = Carried ? row_scales_valid(args.x_partials, args.k) : args.x_partials == nullptr;
    return args.h != nullptr && args.n % 8 == 0 && args.ldh % 8 == 0 &&
           reinterpret_cast<uintptr_t>(args.h) % 16 == 0 && partials;  // whole 16-byte vectors
  }
  CUTLASS_DEVICE static void stage(Arguments const& args, Stage& scales, typename Stage::Scratch& scratch, int m0,
                                   int lane) {
    scales.fill(scratch, args.x_partials, args.m, args.k, args.eps, m0, lane);
  }
  CUTLASS_DEVICE static Row load_row(Arguments const&, Stage const& stage, int row, int) {
    if constexpr (Carried) {
      return {stage.of(row)};
    } else {
      return {};
    }
  }
  CUTLASS_DEVICE static void store_group(Arguments const& args, Row const& row_state, int row, int column,
                                         float const (&gate)[8], float const (&up)[8]) {
    // column = 64 g + 2 q (PairsEpilogue): h's columns 32 g + 8 q onwards
    int64_t const first = (column / kGroupColumns) * (kGroupColumns / 2) + (column % kGroupColumns) * 4;
    if (first >= args.n) return;
    cutlass::Array<BF16, 8> h;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < 8; ++i) {
      if constexpr (Carried) {
        h[i] = BF16(silu(row_state.scale * gate[i]) * (row_state.scale * up[i]));
      } else {
        h[i] = BF16(silu(gate[i]) * up[i]);
      }
    }
    *reinterpret_cast<uint4*>(args.h + row * args.ldh + first) = *reinterpret_cast<uint4 const*>(h.data());
  }
};

// SwigluGroup for training: the same GEMM also writes the pre-activations gate_up (m, 2n), gate columns first, as
// the backward's SwiGLU reads them (trm_fast/ops/recomputed_mlp.py's kept_mlp). Lane q's eight gate values are
// gate_up's columns 32 g + 8 q ... + 7 and its eight up values the same columns + n: two more 16-byte stores. h is
// computed from the rounded gate and up, as SwiGLU's kernel computes it from gate_up, so the forward's h and the
// one the backward writes again for the down weight's gradient are the same numbers.
struct SwigluGroupKeep : NoRow {  // the training forward: x normalised
  struct Arguments {
    BF16* h = nullptr;
    int64_t ldh = 0;
    BF16* gate_up = nullptr;
    int64_t ldgu = 0;
    int64_t n = 0;  // h's columns, gate_up's 2n
  };
  static bool valid(Arguments const& args) {
    return args.h != nullptr && args.gate_up != nullptr && args.n % 8 == 0 && args.ldh % 8 == 0 &&
           args.ldgu % 8 == 0 && reinterpret_cast<uintptr_t>(args.h) % 16 == 0 &&
           reinterpret_cast<uintptr_t>(args.gate_up) % 16 == 0;
  }
  CUTLASS_DEVICE static void store_group(Arguments const& args, Row, int row, int column, float const (&gate)[8],
                                         float const (&up)[8]) {
    int64_t const first = (column / kGroupColumns) * (kGroupColumns / 2) + (column % kGroupColumns) * 4;
    if (first >= args.n) return;
    cutlass::Array<BF16, 8> g, u, h;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < 8; ++i) {
      g[i] = BF16(gate[i]);
      u[i] = BF16(up[i]);
      h[i] = BF16(silu(float(g[i])) * float(u[i]));
    }
    BF16* gate_row = args.gate_up + row * args.ldgu + first;
    *reinterpret_cast<uint4*>(args.h + row * args.ldh + first) = *reinterpret_cast<uint4 const*>(h.data());
    *reinterpret_cast<uint4*>(gate_row) = *reinterpret_cast<uint4 const*>(g.data());
    *reinterpret_cast<uint4*>(gate_row + args.n) = *reinterpret_cast<uint4 const*>(u.data());
  }
};

// The GEMM's N for h's n columns in groups: 2n rounded up to whole 64-row groups of the permuted weight.
inline int64_t grouped_rows(int64_t n) { return (2 * n + kGroupColumns - 1) / kGroupColumns * kGroupColumns; }

// Both forms' GEMM: ping-pong 128x128 tiles, the mainloop that ran within 8% of cuBLAS as a plain GEMM
// (bench/NOTES.md, "The measuring stick"), over (m, grouped_rows(n), k) of the permuted rows w.
using SwigluTile = Shape<_128, _128, _64>;
using SwigluSchedule = cutlass::gemm::KernelTmaWarpSpecializedPingpong;

template <bool Carried>
struct GemmSwigluGroups {
  using Gemm = GemmPairs<SwigluGroup<Carried>, SwigluTile, SwigluSchedule>;
  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* h,
                                            int64_t ldh, const float* x_partials, float eps, int64_t m, int64_t n,
                                            int64_t k) {
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, grouped_rows(n), k,
                                 {static_cast<BF16*>(h), ldh, n, x_partials, static_cast<int>(m),
                                  static_cast<int>(k), eps});
  }
};

// gemm_swiglu_sm90 with x's partials (gemm_swiglu_carried.cu, compiled beside gemm_swiglu.cu).
cudaError_t gemm_swiglu_carried(const void* x, int64_t ldx, const void* w, int64_t ldw, void* h, int64_t ldh,
                                const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                                cudaStream_t stream);

struct GemmSwigluGroupsKeep {
  using Gemm = GemmPairs<SwigluGroupKeep, SwigluTile, SwigluSchedule>;
  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* gate_up,
                                            int64_t ldgu, void* h, int64_t ldh, int64_t m, int64_t n, int64_t k) {
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, grouped_rows(n), k,
                                 {static_cast<BF16*>(h), ldh, static_cast<BF16*>(gate_up), ldgu, n});
  }
};

}  // namespace sm90
}  // namespace trm_fast
