// gemm_rope.h's entry points: x as it is here, with the carried RMSNorm's partials in gemm_rope_carried.cu.
#include "gemm_rope_kernel.cuh"

namespace trm_fast {

// both forms run the same tile scheduler, whose workspace this is (their mainloops and epilogues take none)
size_t gemm_rope_sm90_workspace(int64_t m, int64_t n, int64_t k) {
  using G = sm90::GemmRope<false>;
  return G::Gemm::get_workspace_size(G::arguments(nullptr, k, nullptr, k, nullptr, n, nullptr, nullptr, 1, 16, 0,
                                                  nullptr, 0.0f, m, n, k));
}

cudaError_t gemm_rope_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,
                           const float* cos, const float* sin, int64_t seq, int64_t head_dim, int64_t rotated,
                           const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                           cudaStream_t stream) {
  if (x_partials != nullptr) {
    return sm90::gemm_rope_carried(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, x_partials, eps, m,
                                   n, k, workspace, stream);
  }
  using G = sm90::GemmRope<false>;
  return sm90::run<G::Gemm>(
      G::arguments(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, nullptr, eps, m, n, k), workspace,
      stream);
}

}  // namespace trm_fast
