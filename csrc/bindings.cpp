// trm_fast._C: the Python face of the CUDA launchers. The only file that includes pybind11.
//
// Python passes device pointers and the CUDA stream as integers, strides as (batch, row, col)
// triples in elements, and the device index; trm_fast/ops/*.py checks every input before calling,
// so nothing here re-validates. A CUDA error becomes RuntimeError("trm_fast <kernel>: <error>").
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "add_rms_norm.h"
#ifdef TRM_FAST_WITH_SM90
#include "sm90/gemm_plain.h"
#include "sm90/gemm_residual.h"
#include "sm90/gemm_rope.h"
#include "sm90/gemm_swiglu.h"
#endif

namespace py = pybind11;

namespace {

using Triple = std::array<int64_t, 3>;

trm_fast::Strides strides(const Triple& t) { return {t[0], t[1], t[2]}; }

template <typename T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void check(cudaError_t err, const char* kernel) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // reported here, so cleared: a later launch's check must see only its own error
    throw std::runtime_error(std::string("trm_fast ") + kernel + ": " + cudaGetErrorString(err) + " (" +
                             cudaGetErrorName(err) + ")");
  }
}

// Launches go to the tensors' device: torch may have another one current on this thread.
void use_device(int device, const char* kernel) {
  int current = -1;
  check(cudaGetDevice(&current), kernel);
  if (current != device) check(cudaSetDevice(device), kernel);
}

using Forward = decltype(&trm_fast::add_rms_norm_rows_fwd);
using Backward = decltype(&trm_fast::add_rms_norm_rows_bwd);

// The kernel's name for error messages: the launcher's, less the namespace.
template <auto launcher>
const char* name_of();
template <>
const char* name_of<trm_fast::add_rms_norm_rows_fwd>() { return "add_rms_norm_rows_fwd"; }
template <>
const char* name_of<trm_fast::add_rms_norm_strided_fwd>() { return "add_rms_norm_strided_fwd"; }
template <>
const char* name_of<trm_fast::add_rms_norm_rows_bwd>() { return "add_rms_norm_rows_bwd"; }
template <>
const char* name_of<trm_fast::add_rms_norm_strided_bwd>() { return "add_rms_norm_strided_bwd"; }

template <Forward launcher>
void forward(trm_fast::DType dtype, uintptr_t x, Triple sx, uintptr_t delta, Triple sd, uintptr_t y, Triple sy,
             uintptr_t rstd, int64_t batch, int64_t rows, int64_t n, float eps, int device, uintptr_t stream) {
  use_device(device, name_of<launcher>());
  check(launcher(dtype, ptr<const void>(x), strides(sx), ptr<const void>(delta), strides(sd), ptr<void>(y),
                 strides(sy), ptr<float>(rstd), batch, rows, n, eps, ptr<CUstream_st>(stream)),
        name_of<launcher>());
}

template <Backward launcher>
void backward(trm_fast::DType dtype, uintptr_t dy, Triple sdy, uintptr_t y, Triple sy, uintptr_t rstd, uintptr_t ds,
              Triple sds, int64_t batch, int64_t rows, int64_t n, int device, uintptr_t stream) {
  use_device(device, name_of<launcher>());
  check(launcher(dtype, ptr<const void>(dy), strides(sdy), ptr<const void>(y), strides(sy), ptr<const float>(rstd),
                 ptr<void>(ds), strides(sds), batch, rows, n, ptr<CUstream_st>(stream)),
        name_of<launcher>());
}

#ifdef TRM_FAST_WITH_SM90
void gemm_swiglu_sm90(uintptr_t x, int64_t ldx, uintptr_t w, int64_t ldw, uintptr_t h, int64_t ldh,
                      uintptr_t x_partials, float eps, int64_t m, int64_t n, int64_t k, uintptr_t workspace, int device,
                      uintptr_t stream) {
  use_device(device, "gemm_swiglu_sm90");
  check(trm_fast::gemm_swiglu_sm90(ptr<const void>(x), ldx, ptr<const void>(w), ldw, ptr<void>(h), ldh,
                                   ptr<const float>(x_partials), eps, m, n, k, ptr<void>(workspace),
                                   ptr<CUstream_st>(stream)),
        "gemm_swiglu_sm90");
}

void gemm_swiglu_keep_sm90(uintptr_t x, int64_t ldx, uintptr_t w, int64_t ldw, uintptr_t gate_up, int64_t ldgu,
                           uintptr_t h, int64_t ldh, int64_t m, int64_t n, int64_t k, uintptr_t workspace, int device,
                           uintptr_t stream) {
  use_device(device, "gemm_swiglu_keep_sm90");
  check(trm_fast::gemm_swiglu_keep_sm90(ptr<const void>(x), ldx, ptr<const void>(w), ldw, ptr<void>(gate_up), ldgu,
                                        ptr<void>(h), ldh, m, n, k, ptr<void>(workspace), ptr<CUstream_st>(stream)),
        "gemm_swiglu_keep_sm90");
}

void gemm_plain_sm90(int config, uintptr_t x, int64_t ldx, uintptr_t w, int64_t ldw, uintptr_t out, int64_t ldo,
                     int64_t m, int64_t n, int64_t k, uintptr_t workspace, int device, uintptr_t stream) {
  use_device(device, "gemm_plain_sm90");
  check(trm_fast::gemm_plain_sm90(static_cast<trm_fast::GemmPlainConfig>(config), ptr<const void>(x), ldx,
                                  ptr<const void>(w), ldw, ptr<void>(out), ldo, m, n, k, ptr<void>(workspace),
                                  ptr<CUstream_st>(stream)),
        "gemm_plain_sm90");
}

void gemm_rope_sm90(uintptr_t x, int64_t ldx, uintptr_t w, int64_t ldw, uintptr_t out, int64_t ldo, uintptr_t cos,
                    uintptr_t sin, int64_t seq, int64_t head_dim, int64_t rotated, uintptr_t x_partials, float eps,
                    int64_t m, int64_t n, int64_t k, uintptr_t workspace, int device, uintptr_t stream) {
  use_device(device, "gemm_rope_sm90");
  check(trm_fast::gemm_rope_sm90(ptr<const void>(x), ldx, ptr<const void>(w), ldw, ptr<void>(out), ldo,
                                 ptr<const float>(cos), ptr<const float>(sin), seq, head_dim, rotated,
                                 ptr<const float>(x_partials), eps, m, n, k, ptr<void>(workspace),
                                 ptr<CUstream_st>(stream)),
        "gemm_rope_sm90");
}

void gemm_residual_sm90(uintptr_t x, int64_t ldx, uintptr_t w, int64_t ldw, uintptr_t r, int64_t ldr,
                        uintptr_t r_partials, uintptr_t y, int64_t ldy, uintptr_t partials, float eps, int64_t m,
                        int64_t n, int64_t k, uintptr_t workspace, int device, uintptr_t stream) {
  use_device(device, "gemm_residual_sm90");
  check(trm_fast::gemm_residual_sm90(ptr<const void>(x), ldx, ptr<const void>(w), ldw, ptr<const void>(r), ldr,
                                     ptr<const float>(r_partials), ptr<void>(y), ldy, ptr<float>(partials), eps, m,
                                     n, k, ptr<void>(workspace), ptr<CUstream_st>(stream)),
        "gemm_residual_sm90");
}
#endif

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "trm_fast's CUDA kernels, launched on raw device pointers (see trm_fast/ops).";

  py::enum_<trm_fast::DType>(m, "DType")
      .value("float32", trm_fast::DType::kFloat32)
      .value("bfloat16", trm_fast::DType::kBFloat16);
  m.attr("ROWS_MAX_N") = trm_fast::kRowsMaxN;

  m.def("cuda_runtime_version", [] {
        int version = 0;
        check(cudaRuntimeGetVersion(&version), "cuda_runtime_version");
        return version;
      },
      "The CUDA runtime this extension was built with (and links statically), e.g. 13000.");

  // Forward: (dtype, x, x strides, delta, delta strides, y, y strides, rstd, batch, rows, n, eps, device, stream).
  m.def("add_rms_norm_rows_fwd", &forward<trm_fast::add_rms_norm_rows_fwd>);
  m.def("add_rms_norm_strided_fwd", &forward<trm_fast::add_rms_norm_strided_fwd>);
  // Backward: (dtype, dy, dy strides, y, y strides, rstd, ds, ds strides, batch, rows, n, device, stream).
  m.def("add_rms_norm_rows_bwd", &backward<trm_fast::add_rms_norm_rows_bwd>);
  m.def("add_rms_norm_strided_bwd", &backward<trm_fast::add_rms_norm_strided_bwd>);

  // Hopper's CUTLASS kernels, where the build had CUTLASS (setup.py); WITH_SM90 is false where it did not.
#ifdef TRM_FAST_WITH_SM90
  m.attr("WITH_SM90") = true;
  // (m, n, k) -> bytes of workspace; (x, ldx, w, ldw, h, ldh, x_partials (0: none), eps, m, n, k, workspace, device,
  // stream): h (m, n) from x (m, k) and the gate/up weight w with its rows in groups (sm90/gemm_swiglu.h)
  m.def("gemm_swiglu_sm90_workspace", &trm_fast::gemm_swiglu_sm90_workspace);
  m.def("gemm_swiglu_sm90", &gemm_swiglu_sm90);
  // (m, n, k) -> bytes of workspace; (x, ldx, w, ldw, gate_up, ldgu, h, ldh, m, n, k, workspace, device, stream):
  // the same GEMM writing gate_up (m, 2n) beside h (sm90/gemm_swiglu.h)
  m.def("gemm_swiglu_keep_sm90_workspace", &trm_fast::gemm_swiglu_keep_sm90_workspace);
  m.def("gemm_swiglu_keep_sm90", &gemm_swiglu_keep_sm90);
  // (m, n, k) -> bytes of workspace; (x, ldx, w, ldw, out, ldo, cos, sin, seq, head_dim, rotated, x_partials (0:
  // none), eps, m, n, k, workspace, device, stream): w's q and k rows in rotation-pair order, then in 64-row groups
  // (sm90/gemm_rope.h)
  m.def("gemm_rope_sm90_workspace", &trm_fast::gemm_rope_sm90_workspace);
  m.def("gemm_rope_sm90", &gemm_rope_sm90);
  // (m, n, k) -> bytes of workspace; (x, ldx, w, ldw, r, ldr, r_partials (0: none), y, ldy, partials, eps, m, n, k,
  // workspace, device, stream): y = x w^T + s_r r and y's partial sums of squares, w's rows in 64-row groups
  // (sm90/gemm_residual.h)
  m.def("gemm_residual_sm90_workspace", &trm_fast::gemm_residual_sm90_workspace);
  m.def("gemm_residual_sm90", &gemm_residual_sm90);
  m.attr("PLAIN_SM90_CONFIGS") = trm_fast::kGemmPlainConfigs;
  // (config, m, n, k) -> bytes of workspace
  m.def("gemm_plain_sm90_workspace", [](int config, int64_t m, int64_t n, int64_t k) {
    return trm_fast::gemm_plain_sm90_workspace(static_cast<trm_fast::GemmPlainConfig>(config), m, n, k);
  });
  // (config, x, ldx, w, ldw, out, ldo, m, n, k, workspace, device, stream): out = x w^T, CUTLASS's own epilogue
  m.def("gemm_plain_sm90", &gemm_plain_sm90);
#else
  m.attr("WITH_SM90") = false;
  m.attr("PLAIN_SM90_CONFIGS") = 0;
#endif
}
