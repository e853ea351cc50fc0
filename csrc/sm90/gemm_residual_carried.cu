// gemm_residual.h's kernel on a carried r, with its partials (gemm_residual_kernel.cuh's ResidualGroup<_, true>),
// its own translation unit so that the build compiles it beside the plain form.
#include "gemm_residual_kernel.cuh"

namespace trm_fast {
namespace sm90 {

cudaError_t gemm_residual_carried(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* r,
                                  int64_t ldr, const float* r_partials, void* y, int64_t ldy, float* partials,
                                  float eps, int64_t m, int64_t n, int64_t k, void* workspace, cudaStream_t stream) {
  using G = GemmResidual<true>;
  return run<G::Gemm>(G::arguments(x, ldx, w, ldw, r, ldr, r_partials, y, ldy, partials, eps, m, n, k), workspace,
                      stream);
}

}  // namespace sm90
}  // namespace trm_fast
