// gemm_swiglu.h's single-GEMM variant: the gate/up weight's rows interleaved in pairs (row 2j = gate_j,
// row 2j+1 = up_j), one GEMM over all 2n of them, and an epilogue of our own that turns each thread's
// accumulator pairs into h and stores it from registers. No gate round trip through memory, no shared-memory
// stage in the epilogue: in the ping-pong schedule one warpgroup's epilogue runs under the other's MMAs.
//
// Why pairs land in one thread: a Hopper wgmma accumulator fragment gives each thread two adjacent columns
// per 8-column block (values 0 and 1 of its fragment: columns 2q and 2q + 1 of one row), so with interleaved
// rows gate_j and up_j are neighbours in registers, whatever the tile and the warpgroups' arrangement.
#include "gemm_swiglu_kernel.cuh"

#include <cutlass/epilogue/collective/detail.hpp>

namespace trm_fast {
namespace sm90 {

using RowMajorStride = Stride<int64_t, _1, int64_t>;  // (rows, columns, batch)

// An operator-style epilogue (CUTLASS's DefaultEpilogue interface), run by the warp-specialised kernels through
// CUTLASS's Sm90TmaWarpSpecializedAdapter: h[m, j] = silu(acc[m, 2j]) * acc[m, 2j + 1].
class SwigluPairsEpilogue {
 public:
  using EpilogueSchedule = cutlass::epilogue::NoSmemWarpSpecialized;
  using DispatchPolicy = EpilogueSchedule;
  using ElementC = void;  // no source
  using StrideC = RowMajorStride;
  using ElementD = BF16;  // h
  using StrideD = RowMajorStride;
  using GmemTiledCopyC = void;
  using GmemTiledCopyD = void;
  using ThreadEpilogueOp = void;  // named by CUTLASS's device adapter, never used by this kernel
  struct SharedStorage {};
  using TensorStorage = SharedStorage;

  struct Arguments {
    BF16* h = nullptr;
    int64_t ldh = 0;
  };
  using Params = Arguments;

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const&, Arguments const& args, void*) {
    return args;
  }
  template <class ProblemShape>
  static size_t get_workspace_size(ProblemShape const&, Arguments const&) {
    return 0;
  }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const&, Arguments const&, void*, cudaStream_t,
                                              cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }
  template <class ProblemShape>
  static bool can_implement(ProblemShape const& problem, Arguments const& args) {
    return get<1>(problem) % 2 == 0 && args.h != nullptr;  // whole pairs
  }

  CUTLASS_HOST_DEVICE explicit SwigluPairsEpilogue(Params const& params, SharedStorage const& = SharedStorage())
      : params_(params) {}

  CUTLASS_DEVICE bool is_source_needed() { return false; }

  template <class ProblemShapeMNKL, class BlockShapeMNK, class BlockCoordMNKL, class FrgEngine, class FrgLayout,
            class TiledMma, class ResidueMNK>
  CUTLASS_DEVICE void operator()(ProblemShapeMNKL problem, BlockShapeMNK block_shape, BlockCoordMNKL block_coord,
                                 Tensor<FrgEngine, FrgLayout> const& accumulators, TiledMma tiled_mma, ResidueMNK,
                                 int thread_idx, char*) {
    int const m_size = get<0>(problem), n_size = get<1>(problem);
    // each accumulator's (row, column) in the whole (m, 2n) product
    Tensor coords = local_tile(make_identity_tensor(make_shape(m_size, n_size)), take<0, 2>(block_shape),
                               make_coord(get<0>(block_coord), get<1>(block_coord)));
    Tensor thread_coords = tiled_mma.get_thread_slice(thread_idx).partition_C(coords);
    CUTE_STATIC_ASSERT_V(size(thread_coords) == size(accumulators));
    static_assert(decltype(size(accumulators))::value % 2 == 0, "accumulators come in column pairs");
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < size(accumulators); i += 2) {
      auto [row, column] = thread_coords(i);  // value i + 1 is (row, column + 1): tests/sm90/fragment_pairs.cu
      if (row < m_size && column < n_size) {
        float gate = accumulators(i), up = accumulators(i + 1);
        params_.h[row * params_.ldh + column / 2] = BF16(gate / (1.0f + __expf(-gate)) * up);
      }
    }
  }

 private:
  Params params_;
};

template <class Tile, class MainloopSchedule>
struct GemmSwigluPairs {
  using Gemm = GemmAround<Tile, MainloopSchedule,
                          cutlass::epilogue::collective::detail::Sm90TmaWarpSpecializedAdapter<SwigluPairsEpilogue>>;

  // (m, 2n, k): the GEMM's own shape, over the interleaved rows w; the gate's parameters are not read
  static typename Gemm::Arguments arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, const void*,
                                            int64_t, void* h, int64_t ldh, int64_t m, int64_t n, int64_t k) {
    cutlass::KernelHardwareInfo hw;
    hw.sm_count = sm_count();
    return typename Gemm::Arguments{
        cutlass::gemm::GemmUniversalMode::kGemm,
        {static_cast<int>(m), static_cast<int>(2 * n), static_cast<int>(k), 1},
        {static_cast<const BF16*>(x), make_stride(ldx, _1{}, int64_t(0)), static_cast<const BF16*>(w),
         make_stride(ldw, _1{}, int64_t(0))},
        {static_cast<BF16*>(h), ldh},
        hw};
  }
};

}  // namespace sm90

TRM_FAST_GEMM_SWIGLU_SHAPE(pairs_pingpong_128x128,
                           sm90::GemmSwigluPairs<cute::Shape<cute::_128, cute::_128, cute::_64>,
                                                 cutlass::gemm::KernelTmaWarpSpecializedPingpong>)

}  // namespace trm_fast
