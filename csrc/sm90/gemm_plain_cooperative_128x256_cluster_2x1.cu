// gemm_plain's cooperative 128x256 shape in clusters of two CTAs along M that share the weight's tile by
// multicast.
#include "gemm_plain_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_PLAIN_SHAPE(cooperative_128x256_cluster_2x1,
                          sm90::GemmPlain<cute::Shape<cute::_128, cute::_256, cute::_64>,
                                          cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                          cutlass::epilogue::TmaWarpSpecializedCooperative,
                                          cute::Shape<cute::_2, cute::_1, cute::_1>>)
}  // namespace trm_fast
