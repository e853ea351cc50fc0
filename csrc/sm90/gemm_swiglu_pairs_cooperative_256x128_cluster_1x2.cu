// gemm_swiglu.h's single-GEMM shape in cooperative 256x128 tiles, clusters of two CTAs along N sharing x's tile
// by multicast: 128 FLOP per byte loaded, twice the one-CTA 128x128 tile's.
#include "gemm_swiglu_pairs.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(pairs_cooperative_256x128_cluster_1x2,
                           sm90::GemmSwigluPairs<cute::Shape<cute::_256, cute::_128, cute::_64>,
                                                 cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                                 cute::Shape<cute::_1, cute::_2, cute::_1>>)
}  // namespace trm_fast
