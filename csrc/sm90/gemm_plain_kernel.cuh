// The CUTLASS sm90 GEMM behind gemm_plain.h, as a template over its tile shape, schedules and cluster: each shape is
// instantiated in a file of its own (gemm_plain_<shape>.cu), so that the build compiles them in parallel. The
// epilogue is CUTLASS's collective with its default fusion, D = 1 * acc, and no source operand; the mainloop and
// kernel around it are gemm_sm90.cuh's.
#pragma once

#include "gemm_plain.h"
#include "gemm_sm90.cuh"

#include <cutlass/epilogue/fusion/operations.hpp>

namespace trm_fast {
namespace sm90 {

template <class Tile, class MainloopSchedule, class EpilogueSchedule, class Cluster = Shape<_1, _1, _1>>
struct GemmPlain {
  using Fusion = cutlass::epilogue::fusion::LinearCombination<BF16, float, void, float>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Cluster,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, cutlass::layout::RowMajor, 8, BF16,
      cutlass::layout::RowMajor, 8, EpilogueSchedule, Fusion>::CollectiveOp;
  using Gemm = GemmAround<Tile, MainloopSchedule, Epilogue, Cluster>;

  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                                            int64_t ldo, int64_t m, int64_t n, int64_t k) {
    auto args = collective_arguments<Gemm>(x, ldx, w, ldw, nullptr, out, ldo, m, n, k);
    args.epilogue.thread.alpha = 1.0f;
    args.epilogue.thread.beta = 0.0f;
    return args;
  }
};

}  // namespace sm90

// One shape's entry points, defined by its gemm_plain_<shape>.cu; the arguments after the name are the GemmPlain
// instantiation (variadic: its template arguments hold commas).
#define TRM_FAST_GEMM_PLAIN_SHAPE(name, ...)                                                                  \
  size_t gemm_plain_workspace_##name(int64_t m, int64_t n, int64_t k) {                                      \
    using G = __VA_ARGS__;                                                                                    \
    return G::Gemm::get_workspace_size(G::arguments(nullptr, k, nullptr, k, nullptr, n, m, n, k));            \
  }                                                                                                           \
  cudaError_t gemm_plain_##name(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo, \
                                int64_t m, int64_t n, int64_t k, void* ws, cudaStream_t stream) {             \
    using G = __VA_ARGS__;                                                                                    \
    return sm90::run<typename G::Gemm>(G::arguments(x, ldx, w, ldw, out, ldo, m, n, k), ws, stream);          \
  }

}  // namespace trm_fast
