"""Run every fused add + RMSNorm kernel once, forward and backward, for compute-sanitizer:

    compute-sanitizer --tool memcheck  python bench/sanitize_add_rms_norm.py
    compute-sanitizer --tool racecheck python bench/sanitize_add_rms_norm.py
    compute-sanitizer --tool initcheck python bench/sanitize_add_rms_norm.py

Each case covers one kernel and layout: rows (TRM's 512-wide rows; an odd width that leaves lanes
idle; padded rows), strided (MLP-t's transposed view; misaligned rows), in bfloat16 and float32. Shapes
are small: the tools slow kernels down a hundredfold. PyTorch's caching allocator is switched off so
that memcheck sees each tensor's own bounds. Exits 1 if a result is off from the fp64 truth.
"""

import os
import sys

os.environ.setdefault("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")  # before torch allocates anything

import torch  # noqa: E402

from trm_fast.ops.rms_norm import _unsupported, add_rms_norm_backward, add_rms_norm_fused  # noqa: E402

EPS = 1e-5


def cases(dtype):
    """(name, x, delta) on the GPU."""
    def randn(*shape):
        return torch.randn(*shape, dtype=dtype, device="cuda")

    yield "rows 512", randn(3, 5, 512), randn(3, 5, 512)
    yield "rows 24", randn(2, 7, 24), randn(2, 7, 24)
    yield "rows padded", randn(2, 3, 1024)[..., :512], randn(2, 3, 512)
    yield "columns (MLP-t)", randn(2, 97, 64).transpose(1, 2), randn(2, 64, 97)
    yield "strided (misaligned)", randn(2 * 7 * 24 + 1)[1:].view(2, 7, 24), randn(2, 7, 24)


def main() -> int:
    torch.manual_seed(0)
    failures = 0
    for dtype in (torch.bfloat16, torch.float32):
        for name, x, delta in cases(dtype):
            reason = _unsupported(x, delta)
            if reason is not None:
                raise SystemExit(f"{name}: the fused kernel refuses it: {reason}")
            y, rstd = add_rms_norm_fused(x, delta, EPS)
            dy = torch.randn_like(y)
            ds = add_rms_norm_backward(dy, y, rstd)
            torch.cuda.synchronize()
            # fp64 truth of the same math
            s = (x.double() + delta.double()).requires_grad_(True)
            truth = s * torch.rsqrt(s.square().mean(-1, keepdim=True) + EPS)
            (truth_grad,) = torch.autograd.grad(truth, s, dy.double())
            tol = 1e-4 if dtype == torch.float32 else 5e-2
            err = max((y.double() - truth).abs().max().item(), (ds.double() - truth_grad).abs().max().item())
            ok = err <= tol
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} {name:22s} {str(dtype):15s} max error {err:.2e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
