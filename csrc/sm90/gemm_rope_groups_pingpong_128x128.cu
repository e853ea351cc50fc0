// gemm_rope.h's kernel in ping-pong 128x128 tiles over the weight's rows in 64-row groups: 16-byte table loads and
// stores from each thread (RopeGroup).
#include "gemm_rope_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_ROPE_SHAPE(groups_pingpong_128x128,
                         sm90::GemmRope<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                        cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                                        cute::Shape<cute::_1, cute::_1, cute::_1>, sm90::RopeGroup>)
}  // namespace trm_fast
