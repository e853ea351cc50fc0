// gemm_rope.h's kernel in ping-pong 128x128 tiles in 2x2 clusters, x's and w's tiles multicast.
#include "gemm_rope_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_ROPE_SHAPE(pingpong_128x128_cluster_2x2,
                         sm90::GemmRope<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                        cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                                        cute::Shape<cute::_2, cute::_2, cute::_1>>)
}  // namespace trm_fast
