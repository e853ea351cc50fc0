// gemm_rope.h's kernel on the carried RMSNorm's un-normalised x (gemm_rope_kernel.cuh's RopeGroup<true>), its own
// translation unit so that the build compiles it beside the plain form.
#include "gemm_rope_kernel.cuh"

namespace trm_fast {
namespace sm90 {

cudaError_t gemm_rope_carried(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,
                              const float* cos, const float* sin, int64_t seq, int64_t head_dim, int64_t rotated,
                              const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                              cudaStream_t stream) {
  using G = GemmRope<true>;
  return run<G::Gemm>(
      G::arguments(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, x_partials, eps, m, n, k), workspace,
      stream);
}

}  // namespace sm90
}  // namespace trm_fast
