"""CUTLASS's plain GEMM on Hopper (csrc/sm90/gemm_plain.h), the measuring stick of csrc/sm90's fused epilogues
(bench/gemm_tiles.py --sm90-only times it beside cuBLAS), against torch's GEMM, on an H100/H200 with the
extension built with CUTLASS; skipped elsewhere."""

import pytest
import torch
from helpers import assert_close_at_worst, case_seed, sm90_configs, sm90_gpu

CONFIGS = sm90_configs("PLAIN_SM90_CONFIGS")
# (M, K, N): sudoku_attn's gate/up at batch 768, whole and one half; batch 1; sizes off every tile
SHAPES = [(74496, 512, 3072), (74496, 512, 1536), (97, 512, 1536), (333, 40, 24), (1, 16, 8)]


@sm90_gpu
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_torch(shape, config):
    from trm_fast import _native

    m, k, n = shape
    gen = torch.Generator(device="cpu").manual_seed(case_seed((shape, config)))
    x = torch.randn(m, k, generator=gen).to("cuda", torch.bfloat16)
    w = (torch.randn(n, k, generator=gen) * k**-0.5).to("cuda", torch.bfloat16)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)  # poisoned: every element written
    _native.gemm_plain_sm90(config, x, w, out)
    truth = x.double() @ w.double().T
    torch_err = (torch.nn.functional.linear(x, w).double() - truth).abs().max().item()
    assert_close_at_worst(out, truth, atol=2 * torch_err + 1e-6, rtol=0, what=f"plain GEMM config {config} {shape}")


@sm90_gpu
def test_misaligned_leading_dimension_is_refused():
    """A leading dimension that is not a multiple of 8 elements: CUTLASS's can_implement refuses it, and the
    launcher says so by name instead of launching."""
    from trm_fast import _native

    ext = _native.extension()
    x = torch.randn(64, 20, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(16, 20, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(64, 16, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="gemm_plain_sm90"):
        ext.gemm_plain_sm90(0, x.data_ptr(), 20, w.data_ptr(), 20, out.data_ptr(), 16, 64, 16, 20, 0,
                            x.device.index, _native.stream(x))
