// Fused residual add + RMSNorm: the kernels and their typed launchers (math in add_rms_norm.h).
#include "add_rms_norm.h"

#include <cuda_bf16.h>

namespace trm_fast {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 4;        // rows kernel: one warp per row, 4 warps per block
constexpr int kStridedThreads = 128;    // strided kernel: one thread per row

// 16 bytes of T, so that one load or store moves a whole pack (LDG.128 / STG.128).
template <typename T>
struct alignas(16) Pack {
  static constexpr int kSize = 16 / sizeof(T);
  T v[kSize];
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Element offset of row (b, r) of a tensor; its n entries follow at stride s.col.
__device__ __forceinline__ int64_t row_offset(Strides s, int64_t b, int64_t r) { return b * s.batch + r * s.row; }

// ---------------------------------------------------------------------------------------------
// rows: one warp per row, the row held in registers as kPacks 16-byte packs per lane. Lane l
// takes packs l, l + 32, ...: each step of the warp reads 512 contiguous bytes.

template <typename T>
__global__ void __launch_bounds__(kWarp * kRowsPerBlock)
rows_fwd_kernel(const T* __restrict__ x, Strides sx, const T* __restrict__ delta, Strides sd, T* __restrict__ y,
                Strides sy, float* __restrict__ rstd, int64_t batch, int64_t rows, int n, float eps) {
  constexpr int kVec = Pack<T>::kSize;
  constexpr int kPacks = kRowsMaxN / (kWarp * kVec);
  // map: this warp's row; the whole warp leaves together, so the shuffles below see 32 lanes
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarp;
  if (row >= batch * rows) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t b = row / rows, r = row % rows;
  const auto* xp = reinterpret_cast<const Pack<T>*>(x + row_offset(sx, b, r));
  const auto* dp = reinterpret_cast<const Pack<T>*>(delta + row_offset(sd, b, r));
  auto* yp = reinterpret_cast<Pack<T>*>(y + row_offset(sy, b, r));
  const int packs = n / kVec;

  // load: every pack in flight before the first use
  Pack<T> xv[kPacks], dv[kPacks];
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int p = lane + k * kWarp;
    if (p < packs) {
      xv[k] = xp[p];
      dv[k] = dp[p];
    }
  }

  // compute in fp32: s = x + delta, then the row's sum of squares across the warp
  float s[kPacks][kVec];
  float sumsq = 0.f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
#pragma unroll
    for (int i = 0; i < kVec; ++i) {
      s[k][i] = lane + k * kWarp < packs ? to_float(xv[k].v[i]) + to_float(dv[k].v[i]) : 0.f;
      sumsq += s[k][i] * s[k][i];
    }
  }
  const float inv = rsqrtf(warp_sum(sumsq) / n + eps);

  // store
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int p = lane + k * kWarp;
    if (p < packs) {
      Pack<T> out;
#pragma unroll
      for (int i = 0; i < kVec; ++i) out.v[i] = from_float<T>(s[k][i] * inv);
      yp[p] = out;
    }
  }
  if (lane == 0) rstd[row] = inv;
}

template <typename T>
__global__ void __launch_bounds__(kWarp * kRowsPerBlock)
rows_bwd_kernel(const T* __restrict__ dy, Strides sdy, const T* __restrict__ y, Strides sy,
                const float* __restrict__ rstd, T* __restrict__ ds, Strides sds, int64_t batch, int64_t rows, int n) {
  constexpr int kVec = Pack<T>::kSize;
  constexpr int kPacks = kRowsMaxN / (kWarp * kVec);
  const int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarp;
  if (row >= batch * rows) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t b = row / rows, r = row % rows;
  const auto* gp = reinterpret_cast<const Pack<T>*>(dy + row_offset(sdy, b, r));
  const auto* yp = reinterpret_cast<const Pack<T>*>(y + row_offset(sy, b, r));
  auto* op = reinterpret_cast<Pack<T>*>(ds + row_offset(sds, b, r));
  const int packs = n / kVec;

  Pack<T> gv[kPacks], yv[kPacks];
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int p = lane + k * kWarp;
    if (p < packs) {
      gv[k] = gp[p];
      yv[k] = yp[p];
    }
  }
  const float inv = rstd[row];

  // mean(dy * y) over the row; masked packs count as zero
  float dot = 0.f;
#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    if (lane + k * kWarp < packs) {
#pragma unroll
      for (int i = 0; i < kVec; ++i) dot += to_float(gv[k].v[i]) * to_float(yv[k].v[i]);
    }
  }
  const float mean_dot = warp_sum(dot) / n;

#pragma unroll
  for (int k = 0; k < kPacks; ++k) {
    const int p = lane + k * kWarp;
    if (p < packs) {
      Pack<T> out;
#pragma unroll
      for (int i = 0; i < kVec; ++i) {
        out.v[i] = from_float<T>(inv * (to_float(gv[k].v[i]) - to_float(yv[k].v[i]) * mean_dot));
      }
      op[p] = out;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// strided: one thread per row, two passes over its n entries (the second pass re-reads from L1/L2
// rather than holding an unbounded row in registers).

template <typename T>
__global__ void __launch_bounds__(kStridedThreads)
strided_fwd_kernel(const T* __restrict__ x, Strides sx, const T* __restrict__ delta, Strides sd, T* __restrict__ y,
                   Strides sy, float* __restrict__ rstd, int64_t batch, int64_t rows, int64_t n, float eps) {
  const int64_t row = blockIdx.x * int64_t(kStridedThreads) + threadIdx.x;
  if (row >= batch * rows) return;
  const int64_t b = row / rows, r = row % rows;
  const T* xr = x + row_offset(sx, b, r);
  const T* dr = delta + row_offset(sd, b, r);
  T* yr = y + row_offset(sy, b, r);

  float sumsq = 0.f;
#pragma unroll 4
  for (int64_t i = 0; i < n; ++i) {
    const float s = to_float(xr[i * sx.col]) + to_float(dr[i * sd.col]);
    sumsq += s * s;
  }
  const float inv = rsqrtf(sumsq / n + eps);
#pragma unroll 4
  for (int64_t i = 0; i < n; ++i) {
    yr[i * sy.col] = from_float<T>((to_float(xr[i * sx.col]) + to_float(dr[i * sd.col])) * inv);
  }
  rstd[row] = inv;
}

template <typename T>
__global__ void __launch_bounds__(kStridedThreads)
strided_bwd_kernel(const T* __restrict__ dy, Strides sdy, const T* __restrict__ y, Strides sy,
                   const float* __restrict__ rstd, T* __restrict__ ds, Strides sds, int64_t batch, int64_t rows,
                   int64_t n) {
  const int64_t row = blockIdx.x * int64_t(kStridedThreads) + threadIdx.x;
  if (row >= batch * rows) return;
  const int64_t b = row / rows, r = row % rows;
  const T* gr = dy + row_offset(sdy, b, r);
  const T* yr = y + row_offset(sy, b, r);
  T* outr = ds + row_offset(sds, b, r);

  float dot = 0.f;
#pragma unroll 4
  for (int64_t i = 0; i < n; ++i) dot += to_float(gr[i * sdy.col]) * to_float(yr[i * sy.col]);
  const float mean_dot = dot / n;
  const float inv = rstd[row];
#pragma unroll 4
  for (int64_t i = 0; i < n; ++i) {
    outr[i * sds.col] = from_float<T>(inv * (to_float(gr[i * sdy.col]) - to_float(yr[i * sy.col]) * mean_dot));
  }
}

// Calls f with a value of the element type that `dtype` names (the only two this file builds).
template <typename F>
cudaError_t with_type(DType dtype, F&& f) {
  return dtype == DType::kBFloat16 ? f(__nv_bfloat16{}) : f(float{});
}

int64_t blocks(int64_t work, int64_t per_block) { return (work + per_block - 1) / per_block; }

}  // namespace

cudaError_t add_rms_norm_rows_fwd(DType dtype, const void* x, Strides sx, const void* delta, Strides sd,
                                  void* y, Strides sy, float* rstd, int64_t batch, int64_t rows, int64_t n,
                                  float eps, cudaStream_t stream) {
  if (batch * rows == 0) return cudaSuccess;
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    rows_fwd_kernel<T><<<blocks(batch * rows, kRowsPerBlock), kWarp * kRowsPerBlock, 0, stream>>>(
        static_cast<const T*>(x), sx, static_cast<const T*>(delta), sd, static_cast<T*>(y), sy, rstd, batch, rows,
        static_cast<int>(n), eps);
    return cudaGetLastError();
  });
}

cudaError_t add_rms_norm_rows_bwd(DType dtype, const void* dy, Strides sdy, const void* y, Strides sy,
                                  const float* rstd, void* ds, Strides sds, int64_t batch, int64_t rows,
                                  int64_t n, cudaStream_t stream) {
  if (batch * rows == 0) return cudaSuccess;
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    rows_bwd_kernel<T><<<blocks(batch * rows, kRowsPerBlock), kWarp * kRowsPerBlock, 0, stream>>>(
        static_cast<const T*>(dy), sdy, static_cast<const T*>(y), sy, rstd, static_cast<T*>(ds), sds, batch, rows,
        static_cast<int>(n));
    return cudaGetLastError();
  });
}

cudaError_t add_rms_norm_strided_fwd(DType dtype, const void* x, Strides sx, const void* delta, Strides sd,
                                     void* y, Strides sy, float* rstd, int64_t batch, int64_t rows, int64_t n,
                                     float eps, cudaStream_t stream) {
  if (batch * rows == 0) return cudaSuccess;
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    strided_fwd_kernel<T><<<blocks(batch * rows, kStridedThreads), kStridedThreads, 0, stream>>>(
        static_cast<const T*>(x), sx, static_cast<const T*>(delta), sd, static_cast<T*>(y), sy, rstd, batch, rows, n,
        eps);
    return cudaGetLastError();
  });
}

cudaError_t add_rms_norm_strided_bwd(DType dtype, const void* dy, Strides sdy, const void* y, Strides sy,
                                     const float* rstd, void* ds, Strides sds, int64_t batch, int64_t rows,
                                     int64_t n, cudaStream_t stream) {
  if (batch * rows == 0) return cudaSuccess;
  return with_type(dtype, [&](auto tag) {
    using T = decltype(tag);
    strided_bwd_kernel<T><<<blocks(batch * rows, kStridedThreads), kStridedThreads, 0, stream>>>(
        static_cast<const T*>(dy), sdy, static_cast<const T*>(y), sy, rstd, static_cast<T*>(ds), sds, batch, rows, n);
    return cudaGetLastError();
  });
}

}  // namespace trm_fast
