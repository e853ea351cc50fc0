// gemm_swiglu.h's inference form on the carried RMSNorm's un-normalised x (gemm_swiglu.cuh's SwigluGroup<true>),
// its own translation unit so that the build compiles it beside the plain form.
#include "gemm_swiglu.cuh"

namespace trm_fast {
namespace sm90 {

cudaError_t gemm_swiglu_carried(const void* x, int64_t ldx, const void* w, int64_t ldw, void* h, int64_t ldh,
                                const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                                cudaStream_t stream) {
  using G = GemmSwigluGroups<true>;
  return run<G::Gemm>(G::arguments(x, ldx, w, ldw, h, ldh, x_partials, eps, m, n, k), workspace, stream);
}

}  // namespace sm90
}  // namespace trm_fast
