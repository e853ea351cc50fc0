// gemm_swiglu's cooperative 256x128 shape: each consumer warpgroup 128 rows of one 256x128 tile.
#include "gemm_swiglu_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(cooperative_256x128,
                           sm90::GemmSwiglu<cute::Shape<cute::_256, cute::_128, cute::_64>,
                                            cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                            cutlass::epilogue::TmaWarpSpecializedCooperative>)
}  // namespace trm_fast
