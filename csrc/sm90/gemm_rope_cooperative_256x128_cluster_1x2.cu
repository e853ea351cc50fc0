// gemm_rope.h's kernel in cooperative 256x128 tiles, clusters of two CTAs along N sharing x's tile by multicast.
#include "gemm_rope_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_ROPE_SHAPE(cooperative_256x128_cluster_1x2,
                         sm90::GemmRope<cute::Shape<cute::_256, cute::_128, cute::_64>,
                                        cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                        cute::Shape<cute::_1, cute::_2, cute::_1>>)
}  // namespace trm_fast
