// gemm_swiglu.h's single-GEMM shape in ping-pong 128x128 tiles, clusters of 2x2 CTAs sharing x's tile along N
// and w's along M by multicast: 128 FLOP per byte loaded, twice the one-CTA tile's.
#include "gemm_swiglu_pairs.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(pairs_pingpong_128x128_cluster_2x2,
                           sm90::GemmSwigluPairs<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                                 cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                                                 cute::Shape<cute::_2, cute::_2, cute::_1>>)
}  // namespace trm_fast
