// gemm_swiglu.h's single-GEMM shape over the weight's pairs in 64-row groups, ping-pong 128x128 tiles: the mainloop
// that ran within 8% of cuBLAS as a plain GEMM (bench/NOTES.md), with 16-byte stores of h from registers.
#include "gemm_swiglu_pairs.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(pairs_groups_pingpong_128x128,
                           sm90::GemmSwigluGroups<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                                  cutlass::gemm::KernelTmaWarpSpecializedPingpong>)
}  // namespace trm_fast
