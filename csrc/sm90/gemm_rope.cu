// gemm_rope.h's entry points: each shape's kernel lives in its own gemm_rope_<shape>.cu.
#include "gemm_rope.h"

namespace trm_fast {

#define TRM_FAST_DECLARE_SHAPE(name)                                                                             \
  size_t gemm_rope_workspace_##name(int64_t m, int64_t n, int64_t k);                                            \
  cudaError_t gemm_rope_##name(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo,   \
                               const float* cos, const float* sin, int64_t seq, int64_t head_dim, int64_t rotated, \
                               int64_t m, int64_t n, int64_t k, void* ws, cudaStream_t stream);
TRM_FAST_DECLARE_SHAPE(pingpong_128x128)
TRM_FAST_DECLARE_SHAPE(cooperative_256x128_cluster_1x2)
TRM_FAST_DECLARE_SHAPE(pingpong_128x128_cluster_2x2)
TRM_FAST_DECLARE_SHAPE(groups_pingpong_128x128)
#undef TRM_FAST_DECLARE_SHAPE

size_t gemm_rope_sm90_workspace(GemmRopeConfig config, int64_t m, int64_t n, int64_t k) {
  switch (config) {
    case GemmRopeConfig::kPingpong128x128: return gemm_rope_workspace_pingpong_128x128(m, n, k);
    case GemmRopeConfig::kCooperative256x128Cluster1x2:
      return gemm_rope_workspace_cooperative_256x128_cluster_1x2(m, n, k);
    case GemmRopeConfig::kPingpong128x128Cluster2x2: return gemm_rope_workspace_pingpong_128x128_cluster_2x2(m, n, k);
    case GemmRopeConfig::kGroupsPingpong128x128: return gemm_rope_workspace_groups_pingpong_128x128(m, n, k);
  }
  return 0;
}

cudaError_t gemm_rope_sm90(GemmRopeConfig config, const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                           int64_t ldo, const float* cos, const float* sin, int64_t seq, int64_t head_dim,
                           int64_t rotated, int64_t m, int64_t n, int64_t k, void* workspace, cudaStream_t stream) {
  switch (config) {
    case GemmRopeConfig::kPingpong128x128:
      return gemm_rope_pingpong_128x128(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, m, n, k, workspace,
                                        stream);
    case GemmRopeConfig::kCooperative256x128Cluster1x2:
      return gemm_rope_cooperative_256x128_cluster_1x2(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, m,
                                                       n, k, workspace, stream);
    case GemmRopeConfig::kPingpong128x128Cluster2x2:
      return gemm_rope_pingpong_128x128_cluster_2x2(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, m, n,
                                                    k, workspace, stream);
    case GemmRopeConfig::kGroupsPingpong128x128:
      return gemm_rope_groups_pingpong_128x128(x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, m, n, k,
                                               workspace, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace trm_fast
