// gemm_swiglu.h's entry points: each shape's kernel lives in its own gemm_swiglu_<shape>.cu.
#include "gemm_swiglu.h"

namespace trm_fast {

#define TRM_FAST_DECLARE_SHAPE(name)                                                                            \
  size_t gemm_swiglu_workspace_##name(int64_t m, int64_t n, int64_t k);                                         \
  cudaError_t gemm_swiglu_##name(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* gate,     \
                                 int64_t ldg, void* out, int64_t ldo, int64_t m, int64_t n, int64_t k, void* ws, \
                                 cudaStream_t stream);
TRM_FAST_DECLARE_SHAPE(pingpong_128x128)
TRM_FAST_DECLARE_SHAPE(cooperative_128x256)
TRM_FAST_DECLARE_SHAPE(cooperative_128x256_no_source)
TRM_FAST_DECLARE_SHAPE(cooperative_256x128)
TRM_FAST_DECLARE_SHAPE(pairs_pingpong_128x128)
TRM_FAST_DECLARE_SHAPE(pairs_cooperative_256x128_cluster_1x2)
TRM_FAST_DECLARE_SHAPE(pairs_pingpong_128x128_cluster_2x2)
TRM_FAST_DECLARE_SHAPE(pairs_groups_pingpong_128x128)
#undef TRM_FAST_DECLARE_SHAPE

size_t gemm_swiglu_sm90_workspace(GemmSm90Config config, int64_t m, int64_t n, int64_t k) {
  switch (config) {
    case GemmSm90Config::kPingpong128x128: return gemm_swiglu_workspace_pingpong_128x128(m, n, k);
    case GemmSm90Config::kCooperative128x256: return gemm_swiglu_workspace_cooperative_128x256(m, n, k);
    case GemmSm90Config::kCooperative128x256NoSource:
      return gemm_swiglu_workspace_cooperative_128x256_no_source(m, n, k);
    case GemmSm90Config::kCooperative256x128: return gemm_swiglu_workspace_cooperative_256x128(m, n, k);
    case GemmSm90Config::kPairsPingpong128x128: return gemm_swiglu_workspace_pairs_pingpong_128x128(m, n, k);
    case GemmSm90Config::kPairsCooperative256x128Cluster1x2:
      return gemm_swiglu_workspace_pairs_cooperative_256x128_cluster_1x2(m, n, k);
    case GemmSm90Config::kPairsPingpong128x128Cluster2x2:
      return gemm_swiglu_workspace_pairs_pingpong_128x128_cluster_2x2(m, n, k);
    case GemmSm90Config::kPairsGroupsPingpong128x128:
      return gemm_swiglu_workspace_pairs_groups_pingpong_128x128(m, n, k);
  }
  return 0;
}

cudaError_t gemm_swiglu_sm90(GemmSm90Config config, const void* x, int64_t ldx, const void* w_up, int64_t ldw,
                             const void* gate, int64_t ldg, void* out, int64_t ldo, int64_t m, int64_t n, int64_t k,
                             void* workspace, cudaStream_t stream) {
  switch (config) {
    case GemmSm90Config::kPingpong128x128:
      return gemm_swiglu_pingpong_128x128(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k, workspace, stream);
    case GemmSm90Config::kCooperative128x256:
      return gemm_swiglu_cooperative_128x256(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k, workspace, stream);
    case GemmSm90Config::kCooperative128x256NoSource:
      return gemm_swiglu_cooperative_128x256_no_source(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k, workspace,
                                                       stream);
    case GemmSm90Config::kCooperative256x128:
      return gemm_swiglu_cooperative_256x128(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k, workspace, stream);
    case GemmSm90Config::kPairsPingpong128x128:  // w_up holds the interleaved pairs; gate is not read
      return gemm_swiglu_pairs_pingpong_128x128(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k, workspace,
                                                stream);
    case GemmSm90Config::kPairsCooperative256x128Cluster1x2:
      return gemm_swiglu_pairs_cooperative_256x128_cluster_1x2(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k,
                                                               workspace, stream);
    case GemmSm90Config::kPairsPingpong128x128Cluster2x2:
      return gemm_swiglu_pairs_pingpong_128x128_cluster_2x2(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k, workspace,
                                                           stream);
    case GemmSm90Config::kPairsGroupsPingpong128x128:  // w_up holds the grouped pairs
      return gemm_swiglu_pairs_groups_pingpong_128x128(x, ldx, w_up, ldw, gate, ldg, out, ldo, m, n, k, workspace,
                                                       stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace trm_fast
