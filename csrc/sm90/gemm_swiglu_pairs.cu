// gemm_swiglu.h's single-GEMM shape in ping-pong 128x128 tiles, one CTA per cluster.
#include "gemm_swiglu_pairs.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(pairs_pingpong_128x128,
                           sm90::GemmSwigluPairs<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                                 cutlass::gemm::KernelTmaWarpSpecializedPingpong>)
}  // namespace trm_fast
