// What every Hopper GEMM of csrc/sm90 shares: the mainloop and kernel around an epilogue (GemmAround), the
// launch (run), and the pairs epilogue (PairsEpilogue), which hands each thread's accumulators to a functor eight
// pairs of adjacent columns at a time and stores from registers. Two GEMMs use it: gate/up with SwiGLU over gate
// and up rows permuted in groups (gemm_swiglu.cuh) and QKV with RoPE over q and k rows in rotation-pair order,
// permuted in groups too (gemm_rope_kernel.cuh).
//
// Why pairs land in one thread: a Hopper wgmma accumulator fragment gives each thread two adjacent columns per
// 8-column block (values 0 and 1 of its fragment: columns 2q and 2q + 1 of one row), whatever the tile and the
// warpgroups' arrangement; tests/sm90/fragment_pairs.cu checks it on the host.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/collective/detail.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/numeric_types.h>

namespace trm_fast {
namespace sm90 {

using namespace cute;
using BF16 = cutlass::bfloat16_t;
using RowMajorStride = Stride<int64_t, _1, int64_t>;  // (rows, columns, batch)

// The current device's SM count, asked once per device: the persistent tile scheduler sizes its grid by it.
inline int sm_count() {
  static int counts[64] = {};
  int device = 0;
  cudaGetDevice(&device);
  int& count = counts[device & 63];
  if (count == 0) cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
  return count;
}

// The GEMM around an epilogue collective: x (m, k) row-major times w^T for w (n, k) row-major, bf16, fp32
// accumulation, TMA loads, as many mainloop stages as the epilogue's shared memory leaves room for, a
// persistent tile scheduler. Cluster: CTAs that share their loads by TMA multicast, x's tile across a cluster's
// N extent and w's across its M extent. Even with every operand L2-resident that is what sets the pace at
// K = 512: a 128x128 tile does 64 FLOP per byte it loads, which at the ~4.6 TB/s the SMs draw from L2 is ~300
// TFLOP/s, the rate every one-CTA shape measured (bench/NOTES.md, "Gate/up + SwiGLU on CUTLASS's Hopper GEMM").
template <class Tile, class MainloopSchedule, class Epilogue, class Cluster = Shape<_1, _1, _1>>
using GemmAround = cutlass::gemm::device::GemmUniversalAdapter<cutlass::gemm::kernel::GemmUniversal<
    Shape<int, int, int, int>,
    typename cutlass::gemm::collective::CollectiveBuilder<
        cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, BF16, cutlass::layout::RowMajor, 8, BF16,
        cutlass::layout::ColumnMajor, 8, float, Tile, Cluster,
        cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(sizeof(typename Epilogue::SharedStorage))>,
        MainloopSchedule>::CollectiveOp,
    Epilogue, cutlass::gemm::PersistentScheduler>>;

// One launch of `Gemm` on `args`: cudaErrorInvalidValue where CUTLASS cannot take the problem (alignment), else
// the launch's error.
template <class Gemm>
cudaError_t run(typename Gemm::Arguments const& args, void* workspace, cudaStream_t stream) {
  Gemm gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess) return cudaErrorInvalidValue;
  if (gemm.initialize(args, workspace, stream) != cutlass::Status::kSuccess) return cudaErrorInvalidValue;
  if (gemm.run(stream) != cutlass::Status::kSuccess) {
    cudaError_t err = cudaGetLastError();
    return err != cudaSuccess ? err : cudaErrorLaunchFailure;
  }
  return cudaGetLastError();
}

// Columns of one group: eight 8-column blocks of the accumulator fragment (below).
constexpr int kGroupColumns = 64;

// The first of the 16 output columns that lane q of a quad holds for PairsEpilogue's column = 64 g + 2 q, where a
// weight's rows are permuted in 64-row groups so that accumulator column 64 g + 8 i + 2 q + e holds output column
// 64 g + 16 q + 2 i + e (trm_fast/ops/linear_rope.py's `grouped_rows`; the RoPE and residual GEMMs): 64 g + 16 q.
CUTLASS_DEVICE int grouped_first_column(int column) {
  return (column / kGroupColumns) * kGroupColumns + (column % kGroupColumns) * 8;
}

// The carried RMSNorm's scale of one row, s = rsqrt(mean(y^2) + eps) for y n columns wide, from the row's partial
// sums of squares (gemm_residual.h: one per 64-column group, contiguous), summed in their order. Called per row
// before a tile's stores (PairsEpilogue's load_row). Straight-line loads, predicated up to kCarriedMaxColumns:
// a loop over a run-time count would keep the compiler from issuing the next row's loads before this row's sum.
// Null partials: 1, without a branch.
constexpr int kCarriedMaxColumns = 1024;
CUTLASS_DEVICE float carried_scale(float const* partials, int row, int n, float eps) {
  int const groups = partials != nullptr ? n / kGroupColumns : 0;
  float const* p = partials + static_cast<int64_t>(row) * groups;
  float part[kCarriedMaxColumns / kGroupColumns];
  CUTLASS_PRAGMA_UNROLL
  for (int g = 0; g < kCarriedMaxColumns / kGroupColumns; ++g) part[g] = g < groups ? p[g] : 0.0f;
  float sum = 0.0f;
  CUTLASS_PRAGMA_UNROLL
  for (int g = 0; g < kCarriedMaxColumns / kGroupColumns; ++g) sum += part[g];
  return groups > 0 ? rsqrtf(sum / n + eps) : 1.0f;
}

// A pair of PairsEpilogue (below) that loads nothing per row.
struct NoRow {
  struct Row {};
  template <class Arguments>
  CUTLASS_DEVICE static Row load_row(Arguments const&, int, int) {
    return {};
  }
};

// An operator-style epilogue (CUTLASS's DefaultEpilogue interface), run by the warp-specialised kernels through
// CUTLASS's Sm90TmaWarpSpecializedAdapter. `Pair` says what a thread's pairs of accumulators become: it has
// Arguments, `static bool valid(Arguments const&)`, a `Row` with `static Row load_row(Arguments const&, int row, int
// column)`, and `static void store_group(Arguments const&, Row const&, int row, int column, float const (&first)[8],
// float const (&second)[8])` for the pairs at (row, column + 8 i) and (row, column + 8 i + 1), i = 0..7, where
// column = 64 g + 2 q for the thread's lane q within its quad: one thread's eight pairs of one row in a 64-column
// group, so that it can store what they become as one 16-byte vector where the output's layout puts them side by
// side (a weight's rows permuted so: gemm_swiglu.cuh, gemm_rope_kernel.cuh). Stores of 2 or 4 bytes a thread cost
// as much as the GEMM itself (bench/NOTES.md, "The measuring stick"); 16-byte ones nothing over CUTLASS's own
// TMA-store epilogue ("The cheaper division timed").
//
// `Row` is what a row's groups share (RoPE's table entries): load_row runs for each of the thread's rows, with the
// column of the row's first group in the tile, before the first store, and store_group gets its row's. Loads
// between stores would each wait out their own latency, since a store may alias what the next group loads; loads
// issued together wait out one (bench/NOTES.md, "RoPE's tables loaded once per row"). load_row also sees rows past
// m and must read only what exists for them. Pairs that need nothing per row derive from NoRow.
//
// No shared-memory stage: in the ping-pong schedule one warpgroup's epilogue runs under the other's MMAs.
template <class Pair>
class PairsEpilogue {
 public:
  using EpilogueSchedule = cutlass::epilogue::NoSmemWarpSpecialized;
  using DispatchPolicy = EpilogueSchedule;
  using ElementC = void;  // no source
  using StrideC = RowMajorStride;
  using ElementD = BF16;
  using StrideD = RowMajorStride;
  using GmemTiledCopyC = void;
  using GmemTiledCopyD = void;
  using ThreadEpilogueOp = void;  // named by CUTLASS's device adapter, never used by this kernel
  struct SharedStorage {};
  using TensorStorage = SharedStorage;
  using Arguments = typename Pair::Arguments;
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
    return get<1>(problem) % 2 == 0 && Pair::valid(args);  // whole pairs
  }

  CUTLASS_HOST_DEVICE explicit PairsEpilogue(Params const& params, SharedStorage const& = SharedStorage())
      : params_(params) {}

  CUTLASS_DEVICE bool is_source_needed() { return false; }

  template <class ProblemShapeMNKL, class BlockShapeMNK, class BlockCoordMNKL, class FrgEngine, class FrgLayout,
            class TiledMma, class ResidueMNK>
  CUTLASS_DEVICE void operator()(ProblemShapeMNKL problem, BlockShapeMNK block_shape, BlockCoordMNKL block_coord,
                                 Tensor<FrgEngine, FrgLayout> const& accumulators, TiledMma tiled_mma, ResidueMNK,
                                 int thread_idx, char*) {
    int const m_size = get<0>(problem), n_size = get<1>(problem);
    // each accumulator's (row, column) in the whole (m, n) product
    Tensor coords = local_tile(make_identity_tensor(make_shape(m_size, n_size)), take<0, 2>(block_shape),
                               make_coord(get<0>(block_coord), get<1>(block_coord)));
    Tensor thread_coords = tiled_mma.get_thread_slice(thread_idx).partition_C(coords);
    CUTE_STATIC_ASSERT_V(size(thread_coords) == size(accumulators));
    static_assert(decltype(size(accumulators))::value % 2 == 0, "accumulators come in column pairs");
    store_groups(accumulators, thread_coords, m_size, n_size);
  }

 private:
  // A wgmma accumulator fragment is ((2, 2, N / 8), MMA_M, MMA_N): per 8-column block of an N-wide atom, two
  // adjacent columns of two rows (8 apart), then the atom's repeats along M and N. Eight consecutive blocks of one
  // row are one group (tests/sm90/fragment_pairs.cu checks the coordinates on the host).
  template <class Accumulators, class Coords>
  CUTLASS_DEVICE void store_groups(Accumulators const& accumulators, Coords const& thread_coords, int m_size,
                                   int n_size) {
    using Frag = typename Accumulators::layout_type;
    static_assert(rank_v<decltype(shape<0>(Frag{}))> == 3 && size<0, 0>(Frag{}) == 2 && size<0, 1>(Frag{}) == 2,
                  "a wgmma accumulator fragment: ((2, 2, N / 8), MMA_M, MMA_N)");
    constexpr int kBlocks = size<0, 2>(Frag{});
    static_assert(kBlocks * 8 % kGroupColumns == 0, "an atom's columns are whole groups");
    typename Pair::Row rows[size<1>(Frag{})][2];
    CUTLASS_PRAGMA_UNROLL
    for (int mm = 0; mm < size<1>(Frag{}); ++mm) {
      CUTLASS_PRAGMA_UNROLL
      for (int half = 0; half < 2; ++half) {
        auto [row, column] = thread_coords(make_coord(make_coord(0, half, 0), mm, 0));
        rows[mm][half] = Pair::load_row(params_, row, column);
      }
    }
    CUTLASS_PRAGMA_UNROLL
    for (int mm = 0; mm < size<1>(Frag{}); ++mm) {
      CUTLASS_PRAGMA_UNROLL
      for (int nn = 0; nn < size<2>(Frag{}); ++nn) {
        CUTLASS_PRAGMA_UNROLL
        for (int half = 0; half < 2; ++half) {
          CUTLASS_PRAGMA_UNROLL
          for (int group = 0; group < kBlocks / 8; ++group) {
            float first[8], second[8];
            CUTLASS_PRAGMA_UNROLL
            for (int i = 0; i < 8; ++i) {
              first[i] = accumulators(make_coord(make_coord(0, half, 8 * group + i), mm, nn));
              second[i] = accumulators(make_coord(make_coord(1, half, 8 * group + i), mm, nn));
            }
            auto [row, column] = thread_coords(make_coord(make_coord(0, half, 8 * group), mm, nn));
            if (row < m_size && column < n_size) Pair::store_group(params_, rows[mm][half], row, column, first, second);
          }
        }
      }
    }
  }

  Params params_;
};

// A GEMM whose epilogue is PairsEpilogue<Pair>.
template <class Pair, class Tile, class MainloopSchedule, class Cluster = Shape<_1, _1, _1>>
using GemmPairs =
    GemmAround<Tile, MainloopSchedule,
               cutlass::epilogue::collective::detail::Sm90TmaWarpSpecializedAdapter<PairsEpilogue<Pair>>, Cluster>;

// The arguments of a GEMM with one of CUTLASS's collective epilogues (TMA store of out): x (m, k), w (n, k) and
// out (m, n) row-major with leading dimensions; c, the source operand's address (never read where beta = 0, null
// where its type is void); the epilogue's fusion arguments (alpha, beta, ...) are left to the caller.
template <class Gemm>
typename Gemm::Arguments collective_arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, const void* c,
                                              void* out, int64_t ldo, int64_t m, int64_t n, int64_t k) {
  using Kernel = typename Gemm::GemmKernel;
  // (rows, columns, batch) strides: every operand has unit stride along its last axis
  typename Kernel::StrideA sa = make_stride(ldx, _1{}, int64_t(0));
  typename Kernel::StrideB sb = make_stride(ldw, _1{}, int64_t(0));
  typename Kernel::StrideD sd = make_stride(ldo, _1{}, int64_t(0));
  using ElementC = typename Kernel::CollectiveEpilogue::ElementC;
  cutlass::KernelHardwareInfo hw;
  hw.sm_count = sm_count();
  return typename Gemm::Arguments{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1},
      {static_cast<const BF16*>(x), sa, static_cast<const BF16*>(w), sb},
      {{}, static_cast<const ElementC*>(c), sd, static_cast<BF16*>(out), sd},
      hw};
}

// The pairs GEMMs' arguments: x (m, k) and w (n, k) row-major, then the pair's own.
template <class Gemm>
typename Gemm::Arguments pairs_arguments(const void* x, int64_t ldx, const void* w, int64_t ldw, int64_t m,
                                         int64_t n, int64_t k, typename Gemm::GemmKernel::EpilogueArguments pair) {
  cutlass::KernelHardwareInfo hw;
  hw.sm_count = sm_count();
  return typename Gemm::Arguments{
      cutlass::gemm::GemmUniversalMode::kGemm,
      {static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), 1},
      {static_cast<const BF16*>(x), make_stride(ldx, _1{}, int64_t(0)), static_cast<const BF16*>(w),
       make_stride(ldw, _1{}, int64_t(0))},
      pair,
      hw};
}

}  // namespace sm90
}  // namespace trm_fast
