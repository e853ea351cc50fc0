// gemm_plain's cooperative 256x128 shape in clusters of two CTAs along N that share x's tile by multicast: the
// mainloop of gemm_swiglu's config 5.
#include "gemm_plain_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_PLAIN_SHAPE(cooperative_256x128_cluster_1x2,
                          sm90::GemmPlain<cute::Shape<cute::_256, cute::_128, cute::_64>,
                                          cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                          cutlass::epilogue::TmaWarpSpecializedCooperative,
                                          cute::Shape<cute::_1, cute::_2, cute::_1>>)
}  // namespace trm_fast
