// gemm_swiglu.h's single-GEMM shapes: the gate/up weight's rows interleaved in pairs (row 2j = gate_j,
// row 2j+1 = up_j), one GEMM over all 2n of them, and gemm_sm90.cuh's pairs epilogue turning each pair of
// accumulators into h. No gate round trip through memory, no shared-memory stage in the epilogue. Each shape is
// instantiated in a file of its own (gemm_swiglu_pairs*.cu).
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
    args.h[row * args.ldh + column / 2] = BF16(gate / (1.0f + __expf(-gate)) * up);
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
