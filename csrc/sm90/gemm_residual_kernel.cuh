// gemm_residual.h's kernel: gemm_sm90.cuh's pairs GEMM over a weight's rows permuted in 64-row groups, whose
// epilogue adds the (scaled) residual, stores y and each group's sum of squares (ResidualGroup), instantiated by
// gemm_residual.cu and, on a carried r, gemm_residual_carried.cu.
#pragma once

#include <type_traits>

#include "gemm_residual.h"
#include "gemm_sm90.cuh"

namespace trm_fast {
namespace sm90 {

// Accumulator column 64 g + 8 i + 2 q + e holds y's column 64 g + 16 q + 2 i + e (the rows permuted as RoPE's
// grouped shape permutes them, gemm_rope_kernel.cuh), so lane q of a quad holds y's 16 columns 64 g + 16 q
// onwards of its rows: two 16-byte loads of r, two 16-byte stores of y, and the quad together one group's sum of
// squares. `Row` holds the residual's scale and its 16 columns of both groups of the row in the tile, loaded before
// the tile's first store (PairsEpilogue): y may be stored over r, and a load behind a store would wait for it.
//
// Carried: r is itself a carried y with its partials, and r's row scale multiplies it; the epilogue's producer warp
// stages each tile's scales (RowScales). A separate instantiation (gemm_residual_carried.cu), as the readers'
// (gemm_swiglu.cuh says what a run-time check cost them).
template <int TileGroups, bool Carried>
struct ResidualGroup {
  struct Arguments {
    BF16 const* r = nullptr;
    int64_t ldr = 0;
    float const* r_partials = nullptr;  // Carried: r's (m, n / 64) partials; else null, and r is added as it is
    BF16* y = nullptr;
    int64_t ldy = 0;
    float* partials = nullptr;  // (m, n / 64)
    float eps = 0.0f;
    int m = 0, n = 0;
  };
  struct Row {
    float scale;
    uint4 r[TileGroups][2];
  };
  using Stage = std::conditional_t<Carried, RowScales, NoStage>;
  static bool valid(Arguments const& args) {
    auto aligned = [](void const* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    return args.r != nullptr && args.y != nullptr && args.partials != nullptr && aligned(args.r) &&
           aligned(args.y) && args.ldr % 8 == 0 && args.ldy % 8 == 0 && args.n % kGroupColumns == 0 &&
           args.n <= kCarriedMaxColumns && args.r_partials != args.partials &&
           (Carried ? row_scales_valid(args.r_partials, args.n) : args.r_partials == nullptr);
  }
  CUTLASS_DEVICE static void stage(Arguments const& args, Stage& scales, typename Stage::Scratch& scratch, int m0,
                                   int lane) {
    scales.fill(scratch, args.r_partials, args.m, args.n, args.eps, m0, lane);
  }
  // Branch-free, rows past m and groups past n read from the last that exist (and are never stored): a branch
  // per row would keep the compiler from issuing the next row's loads before this row's.
  CUTLASS_DEVICE static Row load_row(Arguments const& args, Stage const& stage, int row, int column) {
    Row row_state;
    int const r = min(row, args.m - 1), first = grouped_first_column(column);
    CUTLASS_PRAGMA_UNROLL
    for (int g = 0; g < TileGroups; ++g) {
      int const at = min(first + g * kGroupColumns, args.n - kGroupColumns + (column % kGroupColumns) * 8);
      uint4 const* src = reinterpret_cast<uint4 const*>(args.r + r * args.ldr + at);
      row_state.r[g][0] = src[0];
      row_state.r[g][1] = src[1];
    }
    if constexpr (Carried) {
      row_state.scale = stage.of(row);
    } else {
      row_state.scale = 1.0f;
    }
    return row_state;
  }
  CUTLASS_DEVICE static void store_group(Arguments const& args, Row const& row_state, int row, int column,
                                         float const (&a)[8], float const (&b)[8]) {
    int const first = grouped_first_column(column);
    // the group within the tile (tiles start at whole tiles), picked by selects: an index the compiler cannot
    // fold would put Row in local memory
    int const g = (first / kGroupColumns) % TileGroups;
    uint4 picked[2] = {row_state.r[0][0], row_state.r[0][1]};
    CUTLASS_PRAGMA_UNROLL
    for (int j = 1; j < TileGroups; ++j) {
      if (g == j) {
        picked[0] = row_state.r[j][0];
        picked[1] = row_state.r[j][1];
      }
    }
    BF16 const* r = reinterpret_cast<BF16 const*>(picked);
    cutlass::Array<BF16, 16> y;
    float squares = 0.0f;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < 8; ++i) {
      y[2 * i] = BF16(a[i] + row_state.scale * float(r[2 * i]));
      y[2 * i + 1] = BF16(b[i] + row_state.scale * float(r[2 * i + 1]));
      squares += float(y[2 * i]) * float(y[2 * i]) + float(y[2 * i + 1]) * float(y[2 * i + 1]);
    }
    uint4* dst = reinterpret_cast<uint4*>(args.y + row * args.ldy + first);
    uint4 const* src = reinterpret_cast<uint4 const*>(y.data());
    dst[0] = src[0];
    dst[1] = src[1];
    // the quad's four lanes hold the group's 64 columns of this row, and PairsEpilogue calls all four or none
    // (rows past m and groups past n are whole quads)
    int const lane = threadIdx.x % 32;
    unsigned const quad = 0xFu << (lane & ~3);
    squares += __shfl_xor_sync(quad, squares, 1);
    squares += __shfl_xor_sync(quad, squares, 2);
    if (lane % 4 == 0) args.partials[static_cast<int64_t>(row) * (args.n / kGroupColumns) + first / kGroupColumns] =
        squares;
  }
};

// ping-pong 128x128 tiles, as the SwiGLU and RoPE GEMMs
template <bool Carried>
struct GemmResidual {
  using Pair = ResidualGroup<128 / kGroupColumns, Carried>;
  using Gemm = GemmPairs<Pair, Shape<_128, _128, _64>, cutlass::gemm::KernelTmaWarpSpecializedPingpong>;

  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* r,
                                            int64_t ldr, const float* r_partials, void* y, int64_t ldy,
                                            float* partials, float eps, int64_t m, int64_t n, int64_t k) {
    typename Pair::Arguments pair{static_cast<BF16 const*>(r), ldr, r_partials, static_cast<BF16*>(y), ldy,
                                  partials, eps, static_cast<int>(m), static_cast<int>(n)};
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, n, k, pair);
  }
};

// gemm_residual_sm90 with r's partials (gemm_residual_carried.cu, compiled beside gemm_residual.cu).
cudaError_t gemm_residual_carried(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* r,
                                  int64_t ldr, const float* r_partials, void* y, int64_t ldy, float* partials,
                                  float eps, int64_t m, int64_t n, int64_t k, void* workspace, cudaStream_t stream);

}  // namespace sm90
}  // namespace trm_fast
