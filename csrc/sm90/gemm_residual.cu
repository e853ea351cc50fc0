// gemm_residual.h's entry points: r as it is here, a carried r (with its partials) in gemm_residual_carried.cu.
#include "gemm_residual_kernel.cuh"

namespace trm_fast {

// both forms run the same tile scheduler, whose workspace this is (their mainloops and epilogues take none)
size_t gemm_residual_sm90_workspace(int64_t m, int64_t n, int64_t k) {
  using G = sm90::GemmResidual<false>;
  return G::Gemm::get_workspace_size(
      G::arguments(nullptr, k, nullptr, k, nullptr, n, nullptr, nullptr, n, nullptr, 0.0f, m, n, k));
}

cudaError_t gemm_residual_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* r, int64_t ldr,
                               const float* r_partials, void* y, int64_t ldy, float* partials, float eps, int64_t m,
                               int64_t n, int64_t k, void* workspace, cudaStream_t stream) {
  if (r_partials != nullptr) {
    return sm90::gemm_residual_carried(x, ldx, w, ldw, r, ldr, r_partials, y, ldy, partials, eps, m, n, k,
                                       workspace, stream);
  }
  using G = sm90::GemmResidual<false>;
  return sm90::run<G::Gemm>(G::arguments(x, ldx, w, ldw, r, ldr, nullptr, y, ldy, partials, eps, m, n, k),
                            workspace, stream);
}

}  // namespace trm_fast
