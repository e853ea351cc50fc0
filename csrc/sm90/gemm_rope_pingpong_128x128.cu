// gemm_rope.h's kernel in ping-pong 128x128 tiles, one CTA per cluster.
#include "gemm_rope_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_ROPE_SHAPE(pingpong_128x128,
                         sm90::GemmRope<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                        cutlass::gemm::KernelTmaWarpSpecializedPingpong>)
}  // namespace trm_fast
