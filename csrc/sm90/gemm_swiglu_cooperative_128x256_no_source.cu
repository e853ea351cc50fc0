// gemm_swiglu's cooperative 128x256 shape without the source operand C, which the epilogue never reads: no C
// stages in shared memory and a delayed TMA store (see gemm_swiglu_kernel.cuh).
#include "gemm_swiglu_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_SWIGLU_SHAPE(cooperative_128x256_no_source,
                           sm90::GemmSwiglu<cute::Shape<cute::_128, cute::_256, cute::_64>,
                                            cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                            cutlass::epilogue::TmaWarpSpecializedCooperative,
                                            cutlass::epilogue::collective::EpilogueTileAuto, void>)
}  // namespace trm_fast
