// The CUTLASS sm90 GEMM behind gemm_swiglu.h, as a template over its tile shape, schedules and epilogue
// subtile: each shape is instantiated in a file of its own (gemm_swiglu_<shape>.cu), so that the build
// compiles them in parallel. The epilogue is CUTLASS's "linear combination, then a binary activation with an
// auxiliary input" fusion (LinCombDeEltAct, made for backward activations) with our functor as the
// activation: D = silu(aux) * (1 * acc + 0 * C), aux = gate. C is never read (beta = 0). launch() and
// workspace() also serve the single-GEMM shape (gemm_swiglu_pairs.cu), whose arguments() takes the same
// parameters and ignores the gate's. The mainloop and kernel around each epilogue are gemm_sm90.cuh's.
#pragma once

#include "gemm_swiglu.h"
#include "gemm_sm90.cuh"

#include <cutlass/epilogue/fusion/operations.hpp>

namespace trm_fast {
namespace sm90 {

// silu(g) = g / (1 + e^-g) in fp32, with the approximate division (a reciprocal and a multiply): the IEEE one
// compiles to a reciprocal, a range check (FCHK) and a call to a slow path per element, 64 of each per thread and
// tile in the grouped-pairs shape's SASS. Triton's sigmoid, which the other kernels use, divides the same way;
// both are within 2 ulp of the IEEE quotient before the product is rounded to bf16. For g below about -88 the
// denominator is infinite and the quotient 0, as silu's limit.
CUTLASS_DEVICE float silu(float g) { return __fdividef(g, 1.0f + __expf(-g)); }

// The epilogue's activation, called on a fragment of each thread's accumulators (up) and the matching gate
// values, both already converted to fp32. The scalar type is only named, for the arguments' type.
template <class T>
struct SiluTimes {};
template <int N>
struct SiluTimes<cutlass::Array<float, N>> {
  CUTLASS_DEVICE cutlass::Array<float, N> operator()(cutlass::Array<float, N> const& up,
                                                     cutlass::Array<float, N> const& gate) const {
    cutlass::Array<float, N> out;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) out[i] = up[i] * silu(gate[i]);
    return out;
  }
};

// ElementC: the source operand C's type, never read (beta = 0). BF16 (C aliased to D) is what the first shapes
// were measured with; void leaves C out of the epilogue, which frees its shared-memory stages and lets CUTLASS
// delay the TMA store (its builder's rule for epilogues without a source).
template <class Tile, class MainloopSchedule, class EpilogueSchedule,
          class EpilogueTile = cutlass::epilogue::collective::EpilogueTileAuto, class ElementC = BF16>
struct GemmSwiglu {
  using Fusion =
      cutlass::epilogue::fusion::LinCombDeEltAct<cutlass::layout::RowMajor, SiluTimes, BF16, float, BF16, ElementC>;
  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Tile, Shape<_1, _1, _1>,
      EpilogueTile, float, float, ElementC, cutlass::layout::RowMajor, 8, BF16,
      cutlass::layout::RowMajor, 8, EpilogueSchedule, Fusion>::CollectiveOp;
  using Gemm = GemmAround<Tile, MainloopSchedule, Epilogue>;
  using Kernel = typename Gemm::GemmKernel;

  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw,
                                            const void* gate, int64_t ldg, void* out, int64_t ldo, int64_t m,
                                            int64_t n, int64_t k) {
    auto args = collective_arguments<Gemm>(x, ldx, w, ldw, c_address(out), out, ldo, m, n, k);
    auto& fusion = args.epilogue.thread;
    fusion.alpha = 1.0f;
    fusion.beta = 0.0f;
    fusion.aux_ptr = static_cast<const BF16*>(gate);
    fusion.dAux = make_stride(ldg, _1{}, int64_t(0));
    return args;
  }

  // C's address: D's where C has a type (a valid TMA descriptor, never read), none where it is void.
  static auto c_address(void* out) {
    if constexpr (cute::is_void_v<ElementC>) {
      return nullptr;
    } else {
      return static_cast<const ElementC*>(out);
    }
  }

};

template <class G>
size_t workspace(int64_t m, int64_t n, int64_t k) {
  return G::Gemm::get_workspace_size(G::arguments(nullptr, k, nullptr, k, nullptr, n, nullptr, n, m, n, k));
}

template <class G>
cudaError_t launch(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* gate, int64_t ldg, void* out,
                   int64_t ldo, int64_t m, int64_t n, int64_t k, void* ws, cudaStream_t stream) {
  return run<typename G::Gemm>(G::arguments(x, ldx, w, ldw, gate, ldg, out, ldo, m, n, k), ws, stream);
}

}  // namespace sm90

// One shape's entry points, defined by its gemm_swiglu_<shape>.cu; the arguments after the name are the
// GemmSwiglu instantiation (variadic: its template arguments hold commas).
#define TRM_FAST_GEMM_SWIGLU_SHAPE(name, ...)                                                             \
  size_t gemm_swiglu_workspace_##name(int64_t m, int64_t n, int64_t k) {                                   \
    return sm90::workspace<__VA_ARGS__>(m, n, k);                                                          \
  }                                                                                                        \
  cudaError_t gemm_swiglu_##name(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* gate,  \
                                 int64_t ldg, void* out, int64_t ldo, int64_t m, int64_t n, int64_t k,      \
                                 void* ws, cudaStream_t stream) {                                          \
    return sm90::launch<__VA_ARGS__>(x, ldx, w, ldw, gate, ldg, out, ldo, m, n, k, ws, stream);            \
  }

}  // namespace trm_fast
