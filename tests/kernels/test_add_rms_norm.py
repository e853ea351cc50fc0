"""The fused add + RMSNorm (CUDA, csrc/add_rms_norm.cu) against its reference.

CPU: which calls the fused kernel takes and why it refuses the others, the fallback and the errors,
the fake implementations and the autograd wiring (fake and meta tensors), the extension's import and
its error path. GPU (marked `gpu`): forward and backward against fp64 on random inputs (fresh seeds,
TRM's shapes, batch 1, an odd width, MLP-t's transposed view, strided and misaligned inputs), outputs
poisoned with NaN first; opcheck, torch.compile and CUDA-graph capture.
"""

import math
import warnings
import zlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from trm_fast import backend
from trm_fast.ops import rms_norm
from trm_fast.ops.rms_norm import (_unsupported, add_rms_norm, add_rms_norm_backward, add_rms_norm_fused,
                                   add_rms_norm_reference)

EPS = 1e-5
NATIVE = backend.native_status()
needs_native = pytest.mark.skipif(NATIVE is not None, reason=f"trm_fast._C is not available: {NATIVE}")


def _seed(*key) -> int:
    """A fresh, reproducible seed per case."""
    return zlib.crc32(repr(key).encode())


def _mlp_t_view(batch, d, s, dtype=torch.float32, device="cpu"):
    """x and delta as layers.py builds them for MLP-t: h (B, S, D) contiguous, x = h.transpose(1, 2)
    of shape (B, D, S) (stride 1 along D), delta the MLP's contiguous (B, D, S) output."""
    h = torch.randn(batch, s, d, dtype=dtype, device=device)
    return h.transpose(1, 2), torch.randn(batch, d, s, dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------- CPU

@pytest.mark.parametrize("make, reason", [
    (lambda: (torch.randn(3, 97, 512, dtype=torch.float16),) * 2, "float16"),
    (lambda: (torch.randn(2, 2, 3, 8),) * 2, "4-D"),
    (lambda: (torch.randn(0, 8),) * 2, "empty"),
    (lambda: (torch.randn(3, 97, 512), torch.randn(3, 97, 512, dtype=torch.bfloat16)), "differ"),
    (lambda: (torch.randn(3, 97, 512), torch.randn(3, 97, 256)), "differ"),
    # rows layout but a width the rows kernel does not take (not a multiple of 4 fp32, or over 512)
    (lambda: (torch.randn(3, 5, 13),) * 2, "layout"),
    (lambda: (torch.randn(3, 5, 1024),) * 2, "layout"),
    # last axis strided and the one before too
    (lambda: (torch.randn(3, 10, 16)[:, ::2, ::2],) * 2, "layout"),
    # x contiguous but delta transposed: neither layout
    (lambda: (torch.randn(2, 8, 8), torch.randn(2, 8, 8).transpose(1, 2)), "layout"),
    # the supported layouts still need a CUDA device
    (lambda: (torch.randn(3, 97, 512, dtype=torch.bfloat16),) * 2, "CUDA"),
    (lambda: _mlp_t_view(2, 512, 97, torch.bfloat16), "CUDA"),
    (lambda: (torch.randn(1, 1, 512), torch.randn(1, 1, 512, device="meta")), "CUDA"),
])
def test_unsupported_names_the_reason(make, reason):
    x, delta = make()
    assert reason in _unsupported(x, delta)


def test_auto_falls_back_once_with_a_warning_and_gives_the_reference(monkeypatch):
    monkeypatch.setattr(backend, "_warned", set())
    torch.manual_seed(_seed("auto"))
    x, delta = _mlp_t_view(2, 512, 97, torch.bfloat16)
    with pytest.warns(UserWarning, match="add_rms_norm falls back to the reference: .*CUDA"):
        y = add_rms_norm(x, delta, EPS, backend="auto")
    torch.testing.assert_close(y, add_rms_norm_reference(x, delta, EPS), atol=0, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        add_rms_norm(x, delta, EPS, backend="auto")  # the same reason warns once


def test_fused_raises_naming_the_reason():
    x = torch.randn(3, 97, 512, dtype=torch.float16)
    with pytest.raises(backend.FusedUnavailableError, match="add_rms_norm cannot run here: .*float16"):
        add_rms_norm(x, x, EPS, backend="fused")


@pytest.mark.parametrize("backend_name", ["reference", "auto", "fused"])
@pytest.mark.parametrize("x, delta, eps, error, match", [
    (torch.randn(2, 8), torch.randn(2, 8), 0.0, ValueError, "eps must be > 0, got 0.0"),
    (torch.randn(2, 8), torch.randn(2, 8), -1e-5, ValueError, "eps must be > 0, got -1e-05"),
    (torch.randn(2, 8), torch.randn(2, 8), math.nan, ValueError, "eps must be > 0, got nan"),
    (torch.randn(2, 8), torch.randn(8), EPS, ValueError, r"one shape, got \(2, 8\) and \(8,\)"),
    (torch.randn(2, 8), torch.randn(2, 8, dtype=torch.bfloat16), EPS, TypeError,
     "one dtype, got torch.float32 and torch.bfloat16"),
    (torch.randn(2, 8), torch.randn(2, 8, device="meta"), EPS, ValueError, "one device, got cpu and meta"),
    (torch.randn(2, 8), [[0.0] * 8] * 2, EPS, TypeError, "must be tensors, got Tensor and list"),
])
def test_bad_input_raises_naming_it(backend_name, x, delta, eps, error, match):
    with pytest.raises(error, match=match):
        add_rms_norm(x, delta, eps, backend=backend_name)


def test_ops_refuse_inputs_they_cannot_take_before_any_launch():
    x = torch.randn(3, 97, 512)
    with pytest.raises(backend.FusedUnavailableError, match="trm_fast::add_rms_norm cannot take .*on cpu"):
        add_rms_norm_fused(x, x, EPS)
    with pytest.raises(backend.FusedUnavailableError, match=r"add_rms_norm_backward cannot take .*rstd .*\(3, 97\)"):
        add_rms_norm_backward(x, x, torch.ones(3, 96))
    with pytest.raises(backend.FusedUnavailableError, match="add_rms_norm_backward cannot take .*dy"):
        add_rms_norm_backward(x[..., :8], x, torch.ones(3, 97))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["rows", "mlp_t"])
def test_fake_implementations_give_shapes_dtypes_and_strides(dtype, layout):
    with FakeTensorMode():
        if layout == "rows":
            x = torch.empty(3, 97, 512, dtype=dtype, device="cuda")
            delta = torch.empty_like(x)
        else:
            x, delta = _mlp_t_view(2, 512, 97, dtype, device="cuda")
        assert _unsupported(x, delta) in (None, NATIVE)
        y, rstd = torch.ops.trm_fast.add_rms_norm(x, delta, EPS)
        assert (y.shape, y.dtype, y.stride(), y.device) == (x.shape, dtype, x.stride(), x.device)
        assert (rstd.shape, rstd.dtype, rstd.stride()) == (x.shape[:-1], torch.float32, (x.shape[1], 1))
        ds = torch.ops.trm_fast.add_rms_norm_backward(torch.empty_like(y), y, rstd)
        assert (ds.shape, ds.dtype, ds.stride()) == (y.shape, dtype, y.stride())
        if layout == "mlp_t":  # transposed back, MLP-t's output is a contiguous (B, S, D)
            assert y.transpose(1, 2).is_contiguous()


@needs_native
def test_public_function_dispatches_to_the_custom_op_when_supported():
    with FakeTensorMode():
        x, delta = _mlp_t_view(2, 512, 97, torch.bfloat16, device="cuda")
        y = add_rms_norm(x, delta, EPS, backend="fused")
        assert y.shape == x.shape and y.stride() == x.stride()


def test_autograd_calls_the_backward_op_once_for_both_inputs(monkeypatch):
    calls = []
    real = torch.ops.trm_fast.add_rms_norm_backward

    def spy(dy, y, rstd):
        calls.append((dy.shape, y.shape, rstd.shape))
        return real(dy, y, rstd)

    monkeypatch.setattr(rms_norm, "add_rms_norm_backward", spy)
    x = torch.empty(3, 7, 24, device="meta", requires_grad=True)
    delta = torch.empty(3, 7, 24, device="meta", requires_grad=True)
    y, rstd = add_rms_norm_fused(x, delta, EPS)
    assert y.requires_grad and not rstd.requires_grad
    y.sum().backward()
    assert calls == [((3, 7, 24), (3, 7, 24), (3, 7))]
    assert x.grad.shape == delta.grad.shape == (3, 7, 24)


@needs_native
def test_extension_imports_without_a_gpu_and_matches_python():
    from trm_fast import _C

    assert _C.cuda_runtime_version() >= 12000
    assert _C.ROWS_MAX_N == rms_norm._ROWS_MAX_N


@needs_native
def test_cuda_errors_become_exceptions_naming_the_kernel():
    # device 9999 fails before any launch: "no driver" without a GPU, "invalid device ordinal" with one
    from trm_fast import _C

    strides = (0, 0, 1)
    with pytest.raises(RuntimeError, match=r"^trm_fast add_rms_norm_rows_fwd: .+\(cudaError"):
        _C.add_rms_norm_rows_fwd(_C.DType.bfloat16, 0, strides, 0, strides, 0, strides, 0, 1, 1, 8, EPS, 9999, 0)
    with pytest.raises(RuntimeError, match=r"^trm_fast add_rms_norm_strided_bwd: "):
        _C.add_rms_norm_strided_bwd(_C.DType.float32, 0, strides, 0, strides, 0, 0, strides, 1, 1, 8, 9999, 0)


# ---------------------------------------------------------------------------------------------- GPU

def _assert_close(what, actual, expected, atol, rtol=0.0):
    """Elementwise |actual - expected| <= atol + rtol |expected|; on failure, say where the worst is."""
    actual, expected = actual.double(), expected.double()
    excess = (actual - expected).abs() - (atol + rtol * expected.abs())
    excess = torch.where(torch.isnan(actual), torch.inf, excess)
    if excess.max() > 0:
        worst = tuple(int(i) for i in torch.unravel_index(excess.argmax(), excess.shape))
        bad = int((excess > 0).sum())
        raise AssertionError(f"{what}: {bad} of {actual.numel()} elements off; worst at {worst}: got "
                             f"{actual[worst].item()!r}, want {expected[worst].item()!r} "
                             f"(atol {atol:.2e}, rtol {rtol:.1e})")


def _poison_allocator(*tensors):
    """Fill freed blocks of the caching allocator with NaN, of the sizes the op will allocate, so that an
    element the kernel leaves unwritten shows up."""
    blocks = [torch.full((t.numel(),), math.nan, dtype=t.dtype, device="cuda") for t in tensors]
    del blocks


def _exact(x, delta, dy=None):
    """fp64 y (and ds for dy) of the exact math on the given inputs."""
    s = (x.double() + delta.double()).requires_grad_(dy is not None)
    y = s * torch.rsqrt(s.square().mean(-1, keepdim=True) + EPS)
    if dy is None:
        return y.detach(), None
    (ds,) = torch.autograd.grad(y, s, dy.double())
    return y.detach(), ds


def _torch_grad(x, delta, dy):
    xr, dr = x.detach().clone().requires_grad_(), delta.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad(add_rms_norm_reference(xr, dr, EPS), xr, dy)
    return g


def _inputs(case, shape, dtype):
    """x, delta on the GPU for a named layout case (shape is x's)."""
    n = math.prod(shape)
    if case == "rows":
        return torch.randn(shape, dtype=dtype, device="cuda"), torch.randn(shape, dtype=dtype, device="cuda")
    if case == "rows_padded":  # rows of 512 inside rows of 1024: row stride 1024, still 16-byte aligned
        wide = torch.randn(*shape[:-1], 2 * shape[-1], dtype=dtype, device="cuda")
        return wide[..., : shape[-1]], torch.randn(shape, dtype=dtype, device="cuda")
    if case == "misaligned":  # rows layout, pointer off by one element: the strided kernel takes it
        flat = torch.randn(n + 1, dtype=dtype, device="cuda")
        return flat[1:].view(shape), torch.randn(shape, dtype=dtype, device="cuda")
    if case == "mlp_t":
        batch, d, s = shape
        return _mlp_t_view(batch, d, s, dtype, device="cuda")
    if case == "columns_both":  # x and delta both transposed views
        batch, d, s = shape
        return (torch.randn(batch, s, d, dtype=dtype, device="cuda").transpose(1, 2),
                torch.randn(batch, s, d, dtype=dtype, device="cuda").transpose(1, 2))
    raise ValueError(case)


CASES = [
    ("rows", (1, 1, 512)), ("rows", (3, 97, 512)), ("rows", (768, 97, 512)), ("rows", (5, 7, 24)),
    ("rows", (7, 512)), ("rows", (512,)), ("rows_padded", (3, 97, 512)), ("misaligned", (5, 7, 24)),
    ("mlp_t", (2, 512, 97)), ("mlp_t", (1, 512, 97)), ("mlp_t", (768, 512, 97)), ("columns_both", (3, 40, 13)),
]
TOLERANCES = [(torch.float32, 1e-5), (torch.bfloat16, 1e-3)]  # (dtype, atol)


@pytest.mark.gpu
@pytest.mark.parametrize("case, shape", CASES)
@pytest.mark.parametrize("dtype, atol", TOLERANCES)
def test_forward_and_backward_match_fp64(case, shape, dtype, atol):
    torch.manual_seed(_seed(case, shape, str(dtype)))
    x, delta = _inputs(case, shape, dtype)
    assert _unsupported(x, delta) is None
    x.requires_grad_(True)
    delta.requires_grad_(True)
    what = f"{case} {shape} {dtype}"

    _poison_allocator(x, x[..., 0])
    y = add_rms_norm(x, delta, EPS, backend="fused")
    if x.is_contiguous() or case == "mlp_t":
        assert y.stride() == x.stride(), f"{what}: y must keep x's layout"
    truth, _ = _exact(x.detach(), delta.detach())
    if dtype == torch.float32:
        _assert_close(f"forward {what}", y, add_rms_norm_reference(x.detach(), delta.detach(), EPS), atol, 1e-5)
    else:  # within twice PyTorch's own bf16 error against fp64, plus atol
        torch_err = (add_rms_norm_reference(x.detach(), delta.detach(), EPS).double() - truth).abs().max().item()
        _assert_close(f"forward {what}", y, truth, 2 * torch_err + atol)

    dy = torch.randn_like(y)
    _poison_allocator(x)
    dx, ddelta = torch.autograd.grad(y, (x, delta), dy)
    _, truth_grad = _exact(x.detach(), delta.detach(), dy)
    torch_grad = _torch_grad(x, delta, dy)
    if dtype == torch.float32:
        _assert_close(f"backward {what}", dx, torch_grad, atol, 1e-4)
    else:
        torch_gerr = (torch_grad.double() - truth_grad).abs().max().item()
        _assert_close(f"backward {what}", dx, truth_grad, 2 * torch_gerr + atol)
    assert torch.equal(dx, ddelta)


@pytest.mark.gpu
@pytest.mark.parametrize("case, shape", [("rows", (3, 97, 512)), ("rows", (5, 7, 24)), ("mlp_t", (2, 512, 97)),
                                         ("misaligned", (5, 7, 24))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_launchers_write_every_output_element(case, shape, dtype):
    torch.manual_seed(_seed("launch", case, shape, str(dtype)))
    x, delta = _inputs(case, shape, dtype)
    y = torch.full_like(x, math.nan)
    rstd = torch.full(x.shape[:-1], math.nan, device="cuda")
    rms_norm._launch_forward(x, delta, y, rstd, EPS)
    s = x.double() + delta.double()
    _assert_close("rstd", rstd, torch.rsqrt(s.square().mean(-1) + EPS), 0, 1e-5)
    assert not y.isnan().any()
    dy, ds = torch.randn_like(y), torch.full_like(y, math.nan)
    rms_norm._launch_backward(dy, y, rstd, ds)
    assert not ds.isnan().any()


@pytest.mark.gpu
@pytest.mark.parametrize("case, shape", [("rows", (3, 7, 512)), ("rows", (2, 5, 24)), ("mlp_t", (2, 64, 13))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_opcheck(case, shape, dtype):
    torch.manual_seed(_seed("opcheck", case, shape, str(dtype)))
    x, delta = _inputs(case, shape, dtype)
    torch.library.opcheck(torch.ops.trm_fast.add_rms_norm.default,
                          (x.requires_grad_(True), delta.requires_grad_(True), EPS))
    y, rstd = torch.ops.trm_fast.add_rms_norm(x.detach(), delta.detach(), EPS)
    torch.library.opcheck(torch.ops.trm_fast.add_rms_norm_backward.default, (torch.randn_like(y), y, rstd))


@pytest.mark.gpu
@pytest.mark.parametrize("case, shape", [("rows", (4, 97, 512)), ("mlp_t", (4, 512, 97))])
def test_inside_torch_compile(case, shape):
    torch.manual_seed(_seed("compile", case, shape))
    x, delta = _inputs(case, shape, torch.bfloat16)

    def f(x, delta):
        return add_rms_norm(x * 2, delta, EPS, backend="fused") * 3

    compiled = torch.compile(f, fullgraph=True)
    xs = [x.detach().clone().requires_grad_(True) for _ in range(2)]
    ds = [delta.detach().clone().requires_grad_(True) for _ in range(2)]
    out_eager, out_compiled = f(xs[0], ds[0]), compiled(xs[1], ds[1])
    _assert_close("compiled forward", out_compiled, out_eager, 1e-2, 1e-2)
    dy = torch.randn_like(out_eager)
    out_eager.backward(dy)
    out_compiled.backward(dy)
    _assert_close("compiled grad x", xs[1].grad, xs[0].grad, 1e-2, 1e-2)
    _assert_close("compiled grad delta", ds[1].grad, ds[0].grad, 1e-2, 1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("case, shape", [("rows", (768, 97, 512)), ("mlp_t", (3, 512, 97))])
def test_inside_cuda_graph_capture_and_replay(case, shape):
    torch.manual_seed(_seed("graph", case, shape))
    x, delta = _inputs(case, shape, torch.bfloat16)
    dy = torch.randn_like(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the capture
        y, rstd = add_rms_norm_fused(x, delta, EPS)
        add_rms_norm_backward(dy, y, rstd)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y, rstd = add_rms_norm_fused(x, delta, EPS)
        ds = add_rms_norm_backward(dy, y, rstd)
    for step in range(2):  # new data in the captured inputs, then replay
        for t in (x, delta, dy):
            t.copy_(torch.randn(t.shape, dtype=t.dtype, device="cuda"))
        graph.replay()
        torch.cuda.synchronize()
        truth, truth_grad = _exact(x, delta, dy)
        _assert_close(f"graph replay {step} y", y, truth, 2e-2)
        _assert_close(f"graph replay {step} ds", ds, truth_grad, 5e-2, 2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("mlp_t", [False, True])
def test_trm_on_the_fused_backend_stays_within_bf16_error(mlp_t):
    """A bf16 TRM on the fused backend against the same weights in fp32: its error may be at most about
    twice that of the bf16 reference backend (rounding differs, and recursion carries it through)."""
    import trm_fast
    from helpers import make_batch, tiny_config

    cfg = tiny_config(hidden_size=64, num_heads=2, seq_len=9, puzzle_emb_ndim=64, puzzle_emb_len=2,
                      mlp_t=mlp_t, H_layers=0)
    torch.manual_seed(_seed("trm", mlp_t))
    batch = {k: v.cuda() for k, v in make_batch(cfg, seed=1).items()}
    state, logits = None, {}
    for name, dtype, backend_name in [("truth", "float32", "reference"), ("reference", "bfloat16", "reference"),
                                      ("fused", "bfloat16", "fused")]:
        model = trm_fast.TRM(dict(cfg, forward_dtype=dtype, backend=backend_name)).cuda().eval()
        state = state or model.state_dict()
        model.load_state_dict(state)
        with torch.no_grad():
            _, out = model(carry=model.initial_carry(batch), batch=batch)
        logits[name] = out["logits"].double()
    ref_err = (logits["reference"] - logits["truth"]).abs().max().item()
    _assert_close("TRM logits (fused, bf16) against fp32", logits["fused"], logits["truth"], 2 * ref_err + 0.02)
