// gemm_swiglu's ping-pong shape: each consumer warpgroup its own 128x128 tile, one's epilogue under the
// other's MMAs.
#include "gemm_swiglu_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(pingpong_128x128,
                           sm90::GemmSwiglu<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                            cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                                            cutlass::epilogue::TmaWarpSpecialized>)
}  // namespace trm_fast
