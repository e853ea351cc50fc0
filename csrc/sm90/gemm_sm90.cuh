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

#include <type_traits>

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/epilogue/collective/collective_builder.hpp>
#include <cutlass/epilogue/collective/detail.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/gemm/device/gemm_universal_adapter.h>
#include <cutlass/gemm/kernel/gemm_universal.hpp>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

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

// The carried RMSNorm's partial sums of squares: one per 64-column group of a row (gemm_residual.h), read for
// rows up to kCarriedMaxColumns wide.
constexpr int kCarriedMaxColumns = 1024;

// What a pair that stages nothing gets where a staged one gets its tile's Stage (below).
struct NoStage {
  struct Scratch {};
};

// The pairs GEMMs' tile M: the rows a Stage covers.
constexpr int kStagedRows = 128;

// A tile's row scales of the carried RMSNorm, staged in shared memory ahead of the tile's epilogue by the
// epilogue's producer warp (StagedPairsEpilogue, below): read in the epilogue, each row's partials would cost the
// tile one L2 round trip before its first store, and the tile's consumer warpgroup waits it out with the tensor
// pipe idle whenever its epilogue outlasts the other warpgroup's mainloop. Read so, the scale cost gate/up +
// SwiGLU 498 us against 434 without it, and QKV + RoPE 299 against 265, at sudoku_attn's b768 on an H100
// (bench/NOTES.md, "The carried statistic measured").
struct RowScales {
  float scale[kStagedRows];
  // the tile's partials as they lie in memory (kStagedRows rows of n / 64, contiguous), copied by cp.async: the
  // producer warp has 40 registers, and copies in flight hold none of them
  struct Scratch {
    alignas(16) float partials[kStagedRows * kCarriedMaxColumns / kGroupColumns];
  };

  CUTLASS_DEVICE float of(int row) const { return scale[row % kStagedRows]; }

  // By the 32 lanes of the producer warp, for rows m0 ... m0 + kStagedRows - 1 of the (m, n / 64) partials
  // (16-byte aligned): s = rsqrt(mean(y^2) + eps) for y n columns wide, each row's partials summed in their order
  // (the result independent of the tile schedule). Rows past m read zeros and are never stored.
  CUTLASS_DEVICE void fill(Scratch& scratch, float const* partials, int m, int n, float eps, int m0, int lane) {
    int const groups = n / kGroupColumns;
    char const* tile = reinterpret_cast<char const*>(partials + static_cast<int64_t>(m0) * groups);
    int const bytes = min(kStagedRows, m - m0) * groups * static_cast<int>(sizeof(float));
    // the tile's 16-byte chunks (a whole tile's partials are whole chunks), those past m zero-filled
    for (int chunk = lane; chunk < kStagedRows * groups / 4; chunk += 32) {
      int const valid = min(max(bytes - 16 * chunk, 0), 16);
      uint32_t const to = static_cast<uint32_t>(__cvta_generic_to_shared(scratch.partials + 4 * chunk));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to),
                   "l"(valid > 0 ? tile + 16 * chunk : tile), "r"(valid));
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncwarp();
    for (int row = lane; row < kStagedRows; row += 32) {
      float sum = 0.0f;
      for (int g = 0; g < groups; ++g) sum += scratch.partials[row * groups + g];
      scale[row] = rsqrtf(sum / n + eps);
    }
    __syncwarp();  // every lane done with the scratch before the next tile's copies land in it
  }
};

// Whether the partials a RowScales reads can be copied as it copies them: 16-byte aligned, whole groups, at most
// kCarriedMaxColumns columns.
inline bool row_scales_valid(float const* partials, int n) {
  return partials != nullptr && reinterpret_cast<uintptr_t>(partials) % 16 == 0 && n % kGroupColumns == 0 &&
         n > 0 && n <= kCarriedMaxColumns;
}

// A pair of PairsEpilogue (below) that loads nothing per row and stages nothing.
struct NoRow {
  struct Row {};
  using Stage = NoStage;
  template <class Arguments>
  CUTLASS_DEVICE static Row load_row(Arguments const&, Stage const&, int, int) {
    return {};
  }
};

// An operator-style epilogue (CUTLASS's DefaultEpilogue interface), run by the warp-specialised kernels through
// CUTLASS's Sm90TmaWarpSpecializedAdapter, or through StagedPairsEpilogue (below) for pairs that stage. `Pair` says
// what a thread's pairs of accumulators become: it has Arguments, `static bool valid(Arguments const&)`, a `Stage`
// (NoStage, or what the epilogue's producer warp stages for a tile), a `Row` with `static Row load_row(Arguments
// const&, Stage const&, int row, int column)`, and `static void store_group(Arguments const&, Row const&, int row,
// int column, float const (&first)[8], float const (&second)[8])` for the pairs at (row, column + 8 i) and (row,
// column + 8 i + 1), i = 0..7, where column = 64 g + 2 q for the thread's lane q within its quad: one thread's
// eight pairs of one row in a 64-column group, so that it can store what they become as one 16-byte vector where
// the output's layout puts them side by side (a weight's rows permuted so: gemm_swiglu.cuh, gemm_rope_kernel.cuh).
// Stores of 2 or 4 bytes a thread cost as much as the GEMM itself (bench/NOTES.md, "The measuring stick"); 16-byte
// ones nothing over CUTLASS's own TMA-store epilogue ("The cheaper division timed").
//
// `Row` is what a row's groups share (RoPE's table entries, the carried scale): load_row runs for each of the
// thread's rows, with the column of the row's first group in the tile, before the first store, and store_group
// gets its row's. Loads between stores would each wait out their own latency, since a store may alias what the
// next group loads; loads issued together wait out one (bench/NOTES.md, "RoPE's tables loaded once per row").
// load_row also sees rows past m and must read only what exists for them. Pairs that need nothing per row derive
// from NoRow. A pair with a Stage other than NoStage also has `static void stage(Arguments const&, Stage&,
// Stage::Scratch&, int m0, int lane)`, which the 32 lanes of the producer warp call for the tile of rows m0 on.
//
// No shared-memory stage for the output: in the ping-pong schedule one warpgroup's epilogue runs under the
// other's MMAs.
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
  using Stage = typename Pair::Stage;

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

  // the adapter's epilogue: nothing staged
  template <class ProblemShapeMNKL, class BlockShapeMNK, class BlockCoordMNKL, class FrgEngine, class FrgLayout,
            class TiledMma, class ResidueMNK>
  CUTLASS_DEVICE void operator()(ProblemShapeMNKL problem, BlockShapeMNK block_shape, BlockCoordMNKL block_coord,
                                 Tensor<FrgEngine, FrgLayout> const& accumulators, TiledMma tiled_mma, ResidueMNK,
                                 int thread_idx, char*) {
    static_assert(std::is_same_v<Stage, NoStage>, "a pair that stages runs in StagedPairsEpilogue");
    store_tile(problem, block_shape, block_coord, accumulators, tiled_mma, thread_idx, NoStage{}, [] {});
  }

 protected:
  // The tile's epilogue, given its Stage; `rows_loaded` runs once every row's Row is in registers (after which the
  // Stage is no longer read).
  template <class ProblemShapeMNKL, class BlockShapeMNK, class BlockCoordMNKL, class FrgEngine, class FrgLayout,
            class TiledMma, class RowsLoaded>
  CUTLASS_DEVICE void store_tile(ProblemShapeMNKL problem, BlockShapeMNK block_shape, BlockCoordMNKL block_coord,
                                 Tensor<FrgEngine, FrgLayout> const& accumulators, TiledMma tiled_mma, int thread_idx,
                                 Stage const& stage, RowsLoaded&& rows_loaded) {
    int const m_size = get<0>(problem), n_size = get<1>(problem);
    // each accumulator's (row, column) in the whole (m, n) product
    Tensor coords = local_tile(make_identity_tensor(make_shape(m_size, n_size)), take<0, 2>(block_shape),
                               make_coord(get<0>(block_coord), get<1>(block_coord)));
    Tensor thread_coords = tiled_mma.get_thread_slice(thread_idx).partition_C(coords);
    CUTE_STATIC_ASSERT_V(size(thread_coords) == size(accumulators));
    static_assert(decltype(size(accumulators))::value % 2 == 0, "accumulators come in column pairs");
    store_groups(accumulators, thread_coords, m_size, n_size, stage, rows_loaded);
  }

  Params params_;

 private:
  // A wgmma accumulator fragment is ((2, 2, N / 8), MMA_M, MMA_N): per 8-column block of an N-wide atom, two
  // adjacent columns of two rows (8 apart), then the atom's repeats along M and N. Eight consecutive blocks of one
  // row are one group (tests/sm90/fragment_pairs.cu checks the coordinates on the host).
  template <class Accumulators, class Coords, class RowsLoaded>
  CUTLASS_DEVICE void store_groups(Accumulators const& accumulators, Coords const& thread_coords, int m_size,
                                   int n_size, Stage const& stage, RowsLoaded& rows_loaded) {
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
        rows[mm][half] = Pair::load_row(params_, stage, row, column);
      }
    }
    rows_loaded();
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
};

// PairsEpilogue for a pair that stages (a Stage other than NoStage): a collective epilogue of CUTLASS's ping-pong
// kernel in its own right, whose producer warp (idle behind the adapter, whose is_producer_load_needed() is false)
// calls `load` for each of the CTA's tiles in turn while the consumer warpgroups run their mainloops: Pair::stage
// fills the tile's Stage in shared memory, one of kStages in a ring (cutlass::PipelineAsync: the producer waits for
// a free one, the consumer for a full one). The consumer's `store` finds its tile's Stage there when its epilogue
// starts and frees it once its rows are loaded. Read in CUTLASS 4.2's
// cutlass/gemm/kernel/sm90_gemm_tma_warpspecialized_pingpong.hpp: the producer calls load in the tiles' order and
// each consumer's state advances by one in `store` and by get_load_pipe_increment() for the other's tile, so tile
// t is stage t % kStages on both sides.
template <class Pair>
class StagedPairsEpilogue
    : public cutlass::epilogue::collective::detail::Sm90TmaWarpSpecializedAdapter<PairsEpilogue<Pair>> {
  using Base = cutlass::epilogue::collective::detail::Sm90TmaWarpSpecializedAdapter<PairsEpilogue<Pair>>;
  using Stage = typename Pair::Stage;

 public:
  // a tile's Stage is ready ahead of its epilogue with two: with four the producer may run two tiles ahead of each
  // consumer
  static constexpr int kStages = 4;
  using LoadPipeline = cutlass::PipelineAsync<kStages>;
  using LoadPipelineState = cutlass::PipelineState<kStages>;
  using PipelineStorage = typename LoadPipeline::SharedStorage;
  struct SharedStorage {
    Stage stages[kStages];
    typename Stage::Scratch scratch;  // the producer warp's alone
  };
  using TensorStorage = SharedStorage;
  using Params = typename Base::Params;
  using StorePipeline = typename Base::StorePipeline;
  using StorePipelineState = typename Base::StorePipelineState;

  CUTLASS_HOST_DEVICE StagedPairsEpilogue(Params const& params, TensorStorage&) : Base(params) {}

  CUTLASS_DEVICE bool is_producer_load_needed() const { return true; }

  template <class ProblemShapeMNKL, class TileShapeMNK, class TileCoordMNKL, class TiledMma>
  CUTLASS_DEVICE LoadPipelineState load(LoadPipeline pipeline, LoadPipelineState state, ProblemShapeMNKL,
                                        TileShapeMNK, TileCoordMNKL tile_coord, TiledMma, int lane,
                                        TensorStorage& storage, int = -1) {
    static_assert(decltype(size<0>(TileShapeMNK{}))::value == kStagedRows, "a Stage covers the tile's rows");
    pipeline.producer_acquire(state);
    Pair::stage(this->params_, storage.stages[state.index()], storage.scratch,
                static_cast<int>(get<0>(tile_coord)) * kStagedRows, lane);
    pipeline.producer_commit(state);  // each lane's arrival releases its own writes
    ++state;
    return state;
  }

  CUTLASS_DEVICE LoadPipelineState load_tail(LoadPipeline pipeline, LoadPipelineState state) {
    pipeline.producer_tail(state);  // every Stage freed before the CTA exits
    return state;
  }

  template <class ProblemShapeMNKL, class TileShapeMNK, class TileCoordMNKL, class AccEngine, class AccLayout,
            class TiledMma>
  CUTLASS_DEVICE auto store(LoadPipeline pipeline, LoadPipelineState state, StorePipeline,
                            StorePipelineState store_state, ProblemShapeMNKL problem, TileShapeMNK tile_shape,
                            TileCoordMNKL tile_coord, Tensor<AccEngine, AccLayout> accumulators, TiledMma tiled_mma,
                            int thread_idx, TensorStorage& storage, int = -1) {
    pipeline.consumer_wait(state);
    this->store_tile(problem, tile_shape, tile_coord, accumulators, tiled_mma, thread_idx,
                     storage.stages[state.index()], [&] { pipeline.consumer_release(state); });
    ++state;
    return make_tuple(state, store_state);
  }

  CUTLASS_DEVICE auto store_tail(LoadPipeline, LoadPipelineState state, StorePipeline, StorePipelineState store_state) {
    return make_tuple(state, store_state);
  }
};

// A GEMM whose epilogue is PairsEpilogue<Pair>.
template <class Pair>
using PairsCollective =
    std::conditional_t<std::is_same_v<typename Pair::Stage, NoStage>,
                       cutlass::epilogue::collective::detail::Sm90TmaWarpSpecializedAdapter<PairsEpilogue<Pair>>,
                       StagedPairsEpilogue<Pair>>;
template <class Pair, class Tile, class MainloopSchedule, class Cluster = Shape<_1, _1, _1>>
using GemmPairs = GemmAround<Tile, MainloopSchedule, PairsCollective<Pair>, Cluster>;

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
