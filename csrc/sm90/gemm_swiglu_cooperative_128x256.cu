// gemm_swiglu's cooperative 128x256 shape: two consumer warpgroups on one tile, the epilogue in CUTLASS's
// default subtiles (128x32).
#include "gemm_swiglu_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(cooperative_128x256,
                           sm90::GemmSwiglu<cute::Shape<cute::_128, cute::_256, cute::_64>,
                                            cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                            cutlass::epilogue::TmaWarpSpecializedCooperative>)
}  // namespace trm_fast
