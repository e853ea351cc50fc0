// gemm_swiglu.h's training form: h and the pre-activations gate_up (gemm_swiglu.cuh's SwigluGroupKeep), so that
// the backward finds what it needs.
#include "gemm_swiglu.cuh"

namespace trm_fast {

size_t gemm_swiglu_keep_sm90_workspace(int64_t m, int64_t n, int64_t k) {
  using G = sm90::GemmSwigluGroupsKeep;
  return G::Gemm::get_workspace_size(G::arguments(nullptr, k, nullptr, k, nullptr, 2 * n, nullptr, n, m, n, k));
}

cudaError_t gemm_swiglu_keep_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* gate_up, int64_t ldgu,
                                  void* h, int64_t ldh, int64_t m, int64_t n, int64_t k, void* workspace,
                                  cudaStream_t stream) {
  using G = sm90::GemmSwigluGroupsKeep;
  return sm90::run<G::Gemm>(G::arguments(x, ldx, w, ldw, gate_up, ldgu, h, ldh, m, n, k), workspace, stream);
}

}  // namespace trm_fast
