// gemm_plain.h's entry points: each shape's kernel lives in its own gemm_plain_<shape>.cu.
#include "gemm_plain.h"

namespace trm_fast {

#define TRM_FAST_DECLARE_SHAPE(name)                                                                            \
  size_t gemm_plain_workspace_##name(int64_t m, int64_t n, int64_t k);                                          \
  cudaError_t gemm_plain_##name(const void* x, int64_t ldx, const void* w, int64_t ldw, void* out, int64_t ldo, \
                                int64_t m, int64_t n, int64_t k, void* ws, cudaStream_t stream);
TRM_FAST_DECLARE_SHAPE(pingpong_128x128)
TRM_FAST_DECLARE_SHAPE(cooperative_128x256)
TRM_FAST_DECLARE_SHAPE(cooperative_256x128_cluster_1x2)
TRM_FAST_DECLARE_SHAPE(cooperative_128x256_cluster_2x1)
#undef TRM_FAST_DECLARE_SHAPE

size_t gemm_plain_sm90_workspace(GemmPlainConfig config, int64_t m, int64_t n, int64_t k) {
  switch (config) {
    case GemmPlainConfig::kPingpong128x128: return gemm_plain_workspace_pingpong_128x128(m, n, k);
    case GemmPlainConfig::kCooperative128x256: return gemm_plain_workspace_cooperative_128x256(m, n, k);
    case GemmPlainConfig::kCooperative256x128Cluster1x2:
      return gemm_plain_workspace_cooperative_256x128_cluster_1x2(m, n, k);
    case GemmPlainConfig::kCooperative128x256Cluster2x1:
      return gemm_plain_workspace_cooperative_128x256_cluster_2x1(m, n, k);
  }
  return 0;
}

cudaError_t gemm_plain_sm90(GemmPlainConfig config, const void* x, int64_t ldx, const void* w, int64_t ldw, void* out,
                            int64_t ldo, int64_t m, int64_t n, int64_t k, void* workspace, cudaStream_t stream) {
  switch (config) {
    case GemmPlainConfig::kPingpong128x128:
      return gemm_plain_pingpong_128x128(x, ldx, w, ldw, out, ldo, m, n, k, workspace, stream);
    case GemmPlainConfig::kCooperative128x256:
      return gemm_plain_cooperative_128x256(x, ldx, w, ldw, out, ldo, m, n, k, workspace, stream);
    case GemmPlainConfig::kCooperative256x128Cluster1x2:
      return gemm_plain_cooperative_256x128_cluster_1x2(x, ldx, w, ldw, out, ldo, m, n, k, workspace, stream);
    case GemmPlainConfig::kCooperative128x256Cluster2x1:
      return gemm_plain_cooperative_128x256_cluster_2x1(x, ldx, w, ldw, out, ldo, m, n, k, workspace, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace trm_fast
