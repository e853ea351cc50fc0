// gemm_swiglu's cooperative 128x256 shape with its epilogue in 128x64 subtiles (see gemm_swiglu.h).
#include "gemm_swiglu_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(cooperative_128x256_epilogue_128x64,
                           sm90::GemmSwiglu<cute::Shape<cute::_128, cute::_256, cute::_64>,
                                            cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                            cutlass::epilogue::TmaWarpSpecializedCooperative,
                                            cute::Shape<cute::_128, cute::_64>>)
}  // namespace trm_fast
