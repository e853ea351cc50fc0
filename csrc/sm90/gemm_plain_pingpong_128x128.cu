// gemm_plain's ping-pong shape, gemm_swiglu's config 0 mainloop.
#include "gemm_plain_kernel.cuh"

namespace trm_fast {
TRM_FAST_GEMM_PLAIN_SHAPE(pingpong_128x128,
                          sm90::GemmPlain<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                          cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                                          cutlass::epilogue::TmaWarpSpecialized>)
}  // namespace trm_fast
