// gemm_swiglu.h's inference form: h alone (gemm_swiglu.cuh's SwigluGroup), x as it is here and with the carried
// RMSNorm's partials in gemm_swiglu_carried.cu.
#include "gemm_swiglu.cuh"

namespace trm_fast {

// both forms run the same tile scheduler, whose workspace this is (their mainloops and epilogues take none)
size_t gemm_swiglu_sm90_workspace(int64_t m, int64_t n, int64_t k) {
  using G = sm90::GemmSwigluGroups<false>;
  return G::Gemm::get_workspace_size(G::arguments(nullptr, k, nullptr, k, nullptr, n, nullptr, 0.0f, m, n, k));
}

cudaError_t gemm_swiglu_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* h, int64_t ldh,
                             const float* x_partials, float eps, int64_t m, int64_t n, int64_t k, void* workspace,
                             cudaStream_t stream) {
  if (x_partials != nullptr) {
    return sm90::gemm_swiglu_carried(x, ldx, w, ldw, h, ldh, x_partials, eps, m, n, k, workspace, stream);
  }
  using G = sm90::GemmSwigluGroups<false>;
  return sm90::run<G::Gemm>(G::arguments(x, ldx, w, ldw, h, ldh, nullptr, eps, m, n, k), workspace, stream);
}

}  // namespace trm_fast
