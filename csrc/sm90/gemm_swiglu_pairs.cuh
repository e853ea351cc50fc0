// gemm_swiglu.h's single-GEMM shapes: the gate/up weight's rows interleaved in pairs (row 2j = gate_j,
// row 2j+1 = up_j), or in pairs permuted within 64-row groups (SwigluGroup, and SwigluGroupKeep for training),
// one GEMM over all of them, and gemm_sm90.cuh's pairs epilogue turning each pair of accumulators into h. No gate
// round trip through memory, no shared-memory stage in the epilogue. Each shape is instantiated in a file of its
// own (gemm_swiglu_pairs*.cu, gemm_swiglu_keep.cu).
#pragma once

#include "gemm_swiglu_kernel.cuh"

namespace trm_fast {
namespace sm90 {

// h[m, j] = silu(acc[m, 2j]) * acc[m, 2j + 1]
struct SwigluPair {
  struct Arguments {
    BF16* h = nullptr;
    int64_t ldh = 0;
  };
  static bool valid(Arguments const& args) { return args.h != nullptr; }
  CUTLASS_DEVICE static void store(Arguments const& args, int row, int column, float gate, float up) {
    args.h[row * args.ldh + column / 2] = BF16(silu(gate) * up);
  }
};

// The same over the weight's rows in groups (kPairsGroupsPingpong128x128): in each 64-row group g of the permuted
// weight, row 64 g + 8 i + 2 q is gate_j and the next row up_j for j = 32 g + 8 q + i (q = 0..3, i = 0..7;
// trm_fast/ops/linear_swiglu.py's `grouped_pairs` makes it, zero rows past n). Lane q of a quad then holds h's
// columns 32 g + 8 q ... + 7 of its rows, and stores them as one 16-byte vector.
struct SwigluGroup {
  struct Arguments {
    BF16* h = nullptr;
    int64_t ldh = 0;
    int64_t n = 0;  // h's columns: the groups past them hold the weight's zero rows, never stored
  };
  static bool valid(Arguments const& args) {
    return args.h != nullptr && args.n % 8 == 0 && args.ldh % 8 == 0 &&
           reinterpret_cast<uintptr_t>(args.h) % 16 == 0;  // whole 16-byte vectors
  }
  CUTLASS_DEVICE static void store_group(Arguments const& args, int row, int column, float const (&gate)[8],
                                         float const (&up)[8]) {
    // column = 64 g + 2 q (PairsEpilogue): h's columns 32 g + 8 q onwards
    int64_t const first = (column / kGroupColumns) * (kGroupColumns / 2) + (column % kGroupColumns) * 4;
    if (first >= args.n) return;
    cutlass::Array<BF16, 8> h;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < 8; ++i) h[i] = BF16(silu(gate[i]) * up[i]);
    *reinterpret_cast<uint4*>(args.h + row * args.ldh + first) = *reinterpret_cast<uint4 const*>(h.data());
  }
};

// SwigluGroup for training: the same GEMM also writes the pre-activations gate_up (m, 2n), gate columns first, as
// the backward's SwiGLU reads them (trm_fast/ops/recomputed_mlp.py's kept_mlp). Lane q's eight gate values are
// gate_up's columns 32 g + 8 q ... + 7 and its eight up values the same columns + n: two more 16-byte stores. h is
// computed from the rounded gate and up, as SwiGLU's kernel computes it from gate_up, so the forward's h and the
// one the backward writes again for the down weight's gradient are the same numbers.
struct SwigluGroupKeep {
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
  CUTLASS_DEVICE static void store_group(Arguments const& args, int row, int column, float const (&gate)[8],
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

template <class Tile, class MainloopSchedule, class Cluster = Shape<_1, _1, _1>>
struct GemmSwigluGroups {
  using Gemm = GemmPairs<SwigluGroup, Tile, MainloopSchedule, Cluster>;

  // (m, grouped_rows(n), k): over the permuted rows w; the gate's parameters are not read
  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, const void*,
                                            int64_t, void* h, int64_t ldh, int64_t m, int64_t n, int64_t k) {
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, grouped_rows(n), k, {static_cast<BF16*>(h), ldh, n});
  }
};

template <class Tile, class MainloopSchedule>
struct GemmSwigluGroupsKeep {
  using Gemm = GemmPairs<SwigluGroupKeep, Tile, MainloopSchedule>;

  // (m, grouped_rows(n), k) over the permuted rows w, as GemmSwigluGroups, writing gate_up as well
  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* gate_up,
                                            int64_t ldgu, void* h, int64_t ldh, int64_t m, int64_t n, int64_t k) {
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, grouped_rows(n), k,
                                 {static_cast<BF16*>(h), ldh, static_cast<BF16*>(gate_up), ldgu, n});
  }
};

template <class Tile, class MainloopSchedule, class Cluster = Shape<_1, _1, _1>>
struct GemmSwigluPairs {
  using Gemm = GemmPairs<SwigluPair, Tile, MainloopSchedule, Cluster>;

  // (m, 2n, k): the GEMM's own shape, over the interleaved rows w; the gate's parameters are not read
  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, const void*,
                                            int64_t, void* h, int64_t ldh, int64_t m, int64_t n, int64_t k) {
    return pairs_arguments<Gemm>(x, ldx, w, ldw, m, 2 * n, k, {static_cast<BF16*>(h), ldh});
  }
};

}  // namespace sm90
}  // namespace trm_fast
