// Host-side check of what csrc/sm90's pairs GEMMs rely on: in the accumulator fragment of each of their tiled
// MMAs, values 2i and 2i + 1 of every thread sit at (row, column) and (row, column + 1) with the column even, so
// that a gate/up (or RoPE) pair of the permuted weight meets in one thread. CuTe's layout algebra runs on the host;
// no GPU is needed. Also the groups of eight pairs that csrc/sm90/gemm_swiglu.cuh's SwigluGroup stores as one
// vector. Prints two lines per MMA and exits 1 on any other pairing.
#include <cstdio>

#include <cute/tensor.hpp>
#include <cutlass/gemm/collective/collective_builder.hpp>
#include <cutlass/numeric_types.h>

using namespace cute;
using BF16 = cutlass::bfloat16_t;

// Calls visit(thread, coordinates) with each thread's accumulator fragment of (row, column) coordinates in two by
// two tiles of a problem larger than one tile, so that tile offsets enter the coordinates.
template <class Tile, class TiledMma, class Visit>
void for_each_fragment(TiledMma const& mma, Visit visit) {
  int const m = 300, n = 520;
  for (int tile_m = 0; tile_m < 2; ++tile_m) {
    for (int tile_n = 0; tile_n < 2; ++tile_n) {
      Tensor coords =
          local_tile(make_identity_tensor(make_shape(m, n)), take<0, 2>(Tile{}), make_coord(tile_m, tile_n));
      for (int thread = 0; thread < int(size(mma)); ++thread) {
        visit(thread, mma.get_thread_slice(thread).partition_C(coords));
      }
    }
  }
}

// Values 2i and 2i + 1 side by side in one row, the column even (PairsEpilogue's store).
template <class Tile, class TiledMma>
int check_pairs(const char* name, TiledMma const& mma) {
  int bad = 0, pairs = 0;
  for_each_fragment<Tile>(mma, [&](int thread, auto const& mine) {
    for (int i = 0; i + 1 < int(size(mine)); i += 2, ++pairs) {
      auto first = mine(i), second = mine(i + 1);
      bool ok = get<0>(first) == get<0>(second) && get<1>(first) % 2 == 0 && get<1>(first) + 1 == get<1>(second);
      if (!ok && bad++ < 5) {
        std::printf("%s: thread %d values %d, %d at (%d, %d) and (%d, %d)\n", name, thread, i, i + 1,
                    int(get<0>(first)), int(get<1>(first)), int(get<0>(second)), int(get<1>(second)));
      }
    }
  });
  std::printf("%s: %d pairs, %d not side by side\n", name, pairs, bad);
  return bad != 0;
}

// What csrc/sm90/gemm_sm90.cuh's store_groups relies on: the fragment is ((2, 2, N / 8), MMA_M, MMA_N), and for
// each (half, group of eight blocks, mm, nn), value (e, half, 8 group + i) sits at the row of value (0, half, 8
// group) and at its column + 8 i + e, that column being 64 g + 2 q for the thread's lane q in its quad.
template <class Tile, class TiledMma>
int check_groups(const char* name, TiledMma const& mma) {
  int bad = 0, groups = 0;
  for_each_fragment<Tile>(mma, [&](int thread, auto const& mine) {
    static_assert(rank_v<decltype(shape<0>(mine))> == 3, "((2, 2, N / 8), MMA_M, MMA_N)");
    for (int mm = 0; mm < int(size<1>(mine)); ++mm) {
      for (int nn = 0; nn < int(size<2>(mine)); ++nn) {
        for (int half = 0; half < 2; ++half) {
          for (int g = 0; g < int(size<0, 2>(mine)) / 8; ++g, ++groups) {
            auto origin = mine(make_coord(make_coord(0, half, 8 * g), mm, nn));
            int row = get<0>(origin), column = get<1>(origin);
            bool ok = column % 64 == 2 * (thread % 4);
            for (int i = 0; i < 8; ++i) {
              for (int e = 0; e < 2; ++e) {
                auto at = mine(make_coord(make_coord(e, half, 8 * g + i), mm, nn));
                ok = ok && get<0>(at) == row && get<1>(at) == column + 8 * i + e;
              }
            }
            if (!ok && bad++ < 5) {
              std::printf("%s: thread %d group (%d, %d, %d, %d) starts at (%d, %d)\n", name, thread, half, g, mm,
                          nn, row, column);
            }
          }
        }
      }
    }
  });
  std::printf("%s: %d groups, %d not in place\n", name, groups, bad);
  return bad != 0;
}

template <class Tile, class Schedule>
int check(const char* name) {
  using Mainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, BF16, cutlass::layout::RowMajor, 8, BF16,
      cutlass::layout::ColumnMajor, 8, float, Tile, Shape<_1, _1, _1>, cutlass::gemm::collective::StageCountAuto,
      Schedule>::CollectiveOp;
  typename Mainloop::TiledMma mma;
  return check_pairs<Tile>(name, mma) | check_groups<Tile>(name, mma);
}

int main() {
  int failed = check<Shape<_128, _128, _64>, cutlass::gemm::KernelTmaWarpSpecializedPingpong>("ping-pong 128x128");
  failed |= check<Shape<_128, _256, _64>, cutlass::gemm::KernelTmaWarpSpecializedCooperative>("cooperative 128x256");
  return failed;
}
