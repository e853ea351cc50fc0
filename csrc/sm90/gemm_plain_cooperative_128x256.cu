// gemm_plain's cooperative 128x256 shape, gemm_swiglu's config 1 mainloop.
#include "gemm_plain_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_PLAIN_SHAPE(cooperative_128x256,
                          sm90::GemmPlain<cute::Shape<cute::_128, cute::_256, cute::_64>,
                                          cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                          cutlass::epilogue::TmaWarpSpecializedCooperative>)
}  // namespace trm_fast
