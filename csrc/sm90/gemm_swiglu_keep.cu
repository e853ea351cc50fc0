// gemm_swiglu.h's training shape: config 7's GEMM and epilogue (ping-pong 128x128 over the grouped pairs, 16-byte
// stores from registers) writing gate_up beside h, so that the backward finds the pre-activations it needs.
#include "gemm_swiglu_pairs.cuh"

namespace trm_fast {

using KeepGemm = sm90::GemmSwigluGroupsKeep<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                           cutlass::gemm::KernelTmaWarpSpecializedPingpong>;

size_t gemm_swiglu_keep_sm90_workspace(int64_t m, int64_t n, int64_t k) {
  return KeepGemm::Gemm::get_workspace_size(
      KeepGemm::arguments(nullptr, k, nullptr, k, nullptr, 2 * n, nullptr, n, m, n, k));
}

cudaError_t gemm_swiglu_keep_sm90(const void* x, int64_t ldx, const void* w, int64_t ldw, void* gate_up, int64_t ldgu,
                                  void* h, int64_t ldh, int64_t m, int64_t n, int64_t k, void* workspace,
                                  cudaStream_t stream) {
  return sm90::run<KeepGemm::Gemm>(KeepGemm::arguments(x, ldx, w, ldw, gate_up, ldgu, h, ldh, m, n, k), workspace,
                                   stream);
}

}  // namespace trm_fast
