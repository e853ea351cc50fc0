"""The training attention sublayer as one op with its own backward (trm_fast.ops.recomputed_attention), in both
forms: `recomputed_attention` (keeps its input and output alone) and `kept_attention` (keeps the rotated
projection too), against autograd through the official ops: on the GPU with each of PyTorch's attention kernels,
and on the CPU (the op's own fp32 math, RoPE under Triton's interpreter); what each keeps, their dispatch,
opcheck and refusals."""

import warnings

import pytest
import torch
import torch.nn.functional as F
import trm_fast
from helpers import assert_within_torch_error, case_seed, output_and_grads
from torch.nn.attention import SDPBackend, sdpa_kernel
from trm_fast import ops
from trm_fast.backend import FusedUnavailableError
from trm_fast.models.layers import RotaryEmbedding
from trm_fast.ops.attention import rope_attention_reference
from trm_fast.ops.recomputed_attention import (fused_backward_unsupported, kept_attention_backward,
                                               kept_attention_fused, recomputed_attention_backward,
                                               recomputed_attention_fused)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (B, S, K, H, D): sudoku_attn at batch 768 and 1, HRM's 82 positions at an odd batch, ARC's 916, small odd
SHAPES_GPU = [(768, 97, 512, 8, 64), (1, 97, 512, 8, 64), (3, 82, 512, 8, 64), (2, 916, 512, 8, 64),
              (3, 5, 64, 2, 32)]
SHAPES_CPU = [(1, 97, 32, 2, 16), (3, 5, 24, 1, 8), (2, 9, 16, 2, 4)]
# trm_fast's attention backward (`fused_backward`): up to 128 positions, head dims 32 to 128
SHAPES_FUSED_GPU = [(768, 97, 512, 8, 64), (1, 97, 512, 8, 64), (3, 82, 512, 8, 64), (3, 5, 64, 2, 32),
                    (2, 128, 256, 2, 128), (5, 17, 96, 3, 32)]
SHAPES_FUSED_CPU = [(1, 97, 32, 2, 32), (3, 5, 48, 1, 32), (2, 17, 64, 1, 64)]
KERNELS = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
OPS = {"recomputed": recomputed_attention_fused, "kept": kept_attention_fused}


def _official(x, qkv_weight, cos, sin, num_heads):
    b, s, _ = x.shape
    qkv = F.linear(x, qkv_weight).view(b, s, 3 * num_heads, -1)
    return rope_attention_reference(qkv, cos, sin, num_heads)


def _inputs(shape, dtype, device, seed, rope=True):
    b, s, k, h, d = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, k, generator=gen).to(device, dtype)
    w = (torch.randn(3 * h * d, k, generator=gen) * k**-0.5).to(device, dtype)
    dy = torch.randn(b, s, h * d, generator=gen).to(device, dtype)
    cos, sin = (t.to(device) for t in RotaryEmbedding(d, s, 10000.0)()) if rope else (None, None)
    return x, w, cos, sin, dy


def _check(shape, dtype, seed, device, rope=True, op="recomputed", fused_backward=False):
    h = shape[3]
    x, w, cos, sin, dy = _inputs(shape, dtype, device, seed, rope)
    got = output_and_grads(lambda x, w: OPS[op](x, w, cos, sin, h, fused_backward)[0], (x, w), dy)
    tables64 = (cos.double(), sin.double()) if rope else (None, None)
    with sdpa_kernel(SDPBackend.MATH):  # fp64 runs on the math kernel alone
        truth = output_and_grads(lambda x, w: _official(x, w, *tables64, h), (x.double(), w.double()), dy.double())
    torch_ = output_and_grads(lambda x, w: _official(x, w, cos, sin, h), (x, w), dy)
    assert_within_torch_error(("out", "dx", "dqkv_weight"), got, truth, torch_, f"{shape} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape, fused_backward",
                         [(s, False) for s in SHAPES_CPU] + [(s, True) for s in SHAPES_FUSED_CPU])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("rope", [True, False])
@pytest.mark.parametrize("op", list(OPS))
def test_cpu_matches_reference(shape, fused_backward, dtype, rope, op):
    seed = case_seed((shape, str(dtype), rope, op) + (("fused",) if fused_backward else ()))
    _check(shape, dtype, seed=seed, device="cpu", rope=rope, op=op, fused_backward=fused_backward)


# the attention backward kernel's forms, (heads per program, warps), each test run on one config of each (on a CPU,
# the interpreter's one config): autotuning every config per shape and dtype would take minutes here;
# bench/sanitize_triton.py runs every config under compute-sanitizer
FORMS = {"heads1_warps8": (1, 8), "heads2_warps4": (2, 4), "heads4_warps8": (4, 8)} if DEVICE == "cuda" else \
    {"interpreter": None}


@pytest.fixture(params=list(FORMS))
def attention_backward_form(request, monkeypatch):
    from trm_fast.kernels.attention_backward import _attention_backward_kernel as kernel

    form = FORMS[request.param]
    if form is not None:
        picked = [c for c in kernel.configs if (c.kwargs["HEADS"], c.num_warps) == form][:1]
        assert picked, f"no config of the form {request.param}"
        monkeypatch.setattr(kernel, "configs", picked)
        monkeypatch.setattr(kernel, "cache", {})
    return request.param


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_FUSED_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])  # fp32: refused
@pytest.mark.parametrize("rope", [True, False])
@pytest.mark.parametrize("op", list(OPS))
def test_gpu_fused_backward_matches_reference(shape, dtype, rope, op, attention_backward_form):
    from triton.runtime.errors import OutOfResources

    try:
        _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda", rope=rope, op=op, fused_backward=True)
    except OutOfResources as error:
        # a pinned form too large for this GPU at this head size (4 heads a program at D 128 asked 289 KiB of an
        # H100's 227): the autotuner, offered every form, skips such a config (its timing raises the same error)
        pytest.skip(f"form {attention_backward_form} does not fit this GPU at D = {shape[-1]}: {error}")


@pytest.mark.gpu
def test_gpu_fused_backward_autotuned_at_head_dim_128():
    # every form offered: the autotuner must time the forms that cannot launch at D 128 as infinite and take one
    # that can (the pinned test above skips those forms)
    _check((2, 128, 256, 2, 128), torch.bfloat16, seed=case_seed("autotuned D 128"), device="cuda", op="kept",
           fused_backward=True)


def test_fused_backward_writes_every_gradient(attention_backward_form):
    # the kernel's output against the unfused pair's, every element: nothing left as torch.empty made it, rows
    # past S (the tile's padding) written nowhere, the dtype and layout the projection's backward reads
    from trm_fast.kernels.attention_backward import attention_backward_packed
    from trm_fast.ops.recomputed_attention import _attention_forward, _heads, _packed_grads

    dtype = torch.float32 if DEVICE == "cpu" else torch.bfloat16
    for b, s, h, d in ((1, 1, 1, 32), (3, 33, 2, 32), (2, 100, 3, 64)):
        gen = torch.Generator().manual_seed(s)
        qkv = torch.randn(b, s, 3 * h, d, generator=gen).to(DEVICE, dtype)
        dout = torch.randn(b, s, h * d, generator=gen).to(DEVICE, dtype)
        cos, sin = (t.to(DEVICE) for t in RotaryEmbedding(d, s, 10000.0)())
        out, lse = _attention_forward(*_heads(qkv, h))
        out = out.transpose(1, 2).reshape(b, s, -1)
        want = _packed_grads(dout, qkv, out, lse, cos, sin, h, False)
        if DEVICE == "cuda":  # a poisoned pool: an unwritten element would read NaN
            torch.full((4 * want.numel(),), float("nan"), device=DEVICE, dtype=dtype)
        got = attention_backward_packed(dout, qkv, out, lse, cos, sin, h)
        assert got.shape == want.shape and got.dtype == dtype and got.is_contiguous()
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), want.float(), atol=2e-2 if dtype == torch.bfloat16 else 1e-5,
                                   rtol=2e-2 if dtype == torch.bfloat16 else 1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
@pytest.mark.parametrize("op", list(OPS))
def test_gpu_matches_reference(shape, dtype, kernel, op):
    # each of PyTorch's attention kernels that takes these inputs, chosen as SDPA chooses (the reference too)
    b, s, _, h, d = shape
    q = torch.empty(b, s, 3 * h, d, device="cuda", dtype=dtype)[:, :, :h].transpose(1, 2)  # as the op's q
    with sdpa_kernel(kernel):
        try:
            taken = torch._fused_sdp_choice(q, q, q) == kernel.value
        except RuntimeError:  # no kernel allowed takes them
            taken = False
        if not taken:
            pytest.skip(f"{kernel.name} does not take {dtype} {shape} here")
        _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda", op=op)


@pytest.mark.gpu
def test_gpu_without_rope():
    _check((3, 82, 512, 8, 64), torch.bfloat16, seed=torch.seed() % 2**31, device="cuda", rope=False)


def _kept(fn, *args):
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        out = fn(*args)
    return kept, out


def test_keeps_input_output_and_logsumexp_only():
    x, w, cos, sin, _ = _inputs((2, 9, 16, 2, 8), torch.float32, DEVICE, seed=2)
    x.requires_grad_(True)
    w.requires_grad_(True)
    kept, (out, lse) = _kept(recomputed_attention_fused, x, w, cos, sin, 2)
    assert len(kept) == 6 and all(a is b for a, b in zip(kept, (x, w, cos, sin, out, lse)))
    assert lse.shape == (2, 2, 9) and lse.dtype == torch.float32
    # autograd through the official ops keeps q, k and v, 18 rows of 16 each at least
    official, _ = _kept(_official, x, w, cos, sin, 2)
    assert sum(t.numel() == 18 * 16 for t in official) >= 3


def test_kept_keeps_the_rotated_projection():
    x, w, cos, sin, _ = _inputs((2, 9, 16, 2, 8), torch.float32, DEVICE, seed=6)
    x.requires_grad_(True)
    w.requires_grad_(True)
    kept, (out, lse, qkv) = _kept(kept_attention_fused, x, w, cos, sin, 2)
    assert len(kept) == 7 and all(a is b for a, b in zip(kept, (x, w, qkv, cos, sin, out, lse)))
    assert qkv.shape == (2, 9, 6, 8) and not qkv.requires_grad and not lse.requires_grad


def test_opcheck():
    x, w, cos, sin, dy = _inputs((2, 5, 16, 2, 4), torch.float32, DEVICE, seed=3)
    torch.library.opcheck(recomputed_attention_fused, (x.requires_grad_(True), w.requires_grad_(True), cos, sin, 2))
    out, lse = recomputed_attention_fused(x.detach(), w.detach(), cos, sin, 2)
    torch.library.opcheck(recomputed_attention_backward, (dy, x.detach(), w.detach(), cos, sin, out, lse, 2))
    torch.library.opcheck(kept_attention_fused, (x.requires_grad_(True), w, cos, sin, 2))
    out, lse, qkv = kept_attention_fused(x.detach(), w.detach(), cos, sin, 2)
    torch.library.opcheck(kept_attention_backward, (dy, x.detach(), w.detach(), qkv, cos, sin, out, lse, 2))
    # with trm_fast's attention backward (a head dim of 32 at least)
    x, w, cos, sin, dy = _inputs((2, 5, 16, 2, 32), torch.float32, DEVICE, seed=4)
    for op, backward in ((recomputed_attention_fused, recomputed_attention_backward),
                         (kept_attention_fused, kept_attention_backward)):
        torch.library.opcheck(op, (x.detach().requires_grad_(True), w.detach().requires_grad_(True), cos, sin, 2,
                                   True))
        out, lse, *kept = op(x.detach(), w.detach(), cos, sin, 2, True)
        torch.library.opcheck(backward, (dy, x.detach(), w.detach(), *kept, cos, sin, out, lse, 2, True))


def _spy(monkeypatch, name):
    """The calls that self_attention makes to the op `name` (trm_fast.ops.attention's), which still runs."""
    called, real = [], getattr(trm_fast.ops.attention, name)
    monkeypatch.setattr(trm_fast.ops.attention, name, lambda *a: called.append(a) or real(*a))
    return called


def test_dispatch_and_bad_input(monkeypatch):
    called = _spy(monkeypatch, "recomputed_attention_fused")
    x, w, cos, sin, _ = _inputs((2, 9, 16, 2, 8), torch.float32, DEVICE, seed=5)
    x.requires_grad_(True)
    # only for a model built with recompute, while autograd records, off the reference backend, on a GPU
    # (trm_fast.backend.recomputes_in_ops); the reference stays the official ops
    want = _official(x, w, cos, sin, 2)
    assert torch.equal(ops.self_attention(x, w, (cos, sin), 2, backend="reference", recompute=True), want)
    ops.self_attention(x, w, (cos, sin), 2, backend="fused")
    assert not called
    if DEVICE == "cpu":  # Triton's interpreter stands in for a GPU
        monkeypatch.setattr(trm_fast.backend, "recomputes_in_ops", lambda backend, device: backend != "reference")
    torch.testing.assert_close(ops.self_attention(x, w, (cos, sin), 2, backend="fused", recompute=True), want)
    assert len(called) == 1
    for args, match in _bad_calls(x, w, cos, sin):
        with pytest.raises(FusedUnavailableError, match=match):
            ops.self_attention(*args, 2, backend="fused", recompute=True)


def _bad_calls(x, w, cos, sin):
    """(self_attention's first three arguments, the refusal they must raise on 'fused') for both training ops."""
    return (((x, w[:, :15], (cos, sin)), r"weight must be \(3 \* num_heads \* D, K\)"),
            ((x, w[:36], (cos[:, :6], sin[:, :6])), "head dim D must be a power of two"),
            ((x, w, (cos.double(), sin)), r"cos must be a float32 \(S, D\)"),
            ((x[:0], w, (cos, sin)), r"x must be a non-empty \(B, S, K\)"),
            ((x, w.double(), (cos, sin)), "weight .* must have x's dtype"))


def test_kept_dispatch(monkeypatch):
    # without recompute, while autograd records: on a GPU, 'fused' (and 'auto' where AUTO_OPS names it) runs
    # kept_attention; on a CPU, or on 'reference', the official ops' autograd stays
    called = _spy(monkeypatch, "kept_attention_fused")
    x, w, cos, sin, _ = _inputs((2, 9, 16, 2, 8), torch.float32, DEVICE, seed=7)
    x.requires_grad_(True)
    want = _official(x, w, cos, sin, 2)
    assert torch.equal(ops.self_attention(x, w, (cos, sin), 2, backend="reference"), want)
    monkeypatch.setattr(trm_fast.backend, "AUTO_OPS", trm_fast.backend.AUTO_OPS - {"kept_attention"})
    ops.self_attention(x, w, (cos, sin), 2, backend="auto")
    assert not called
    torch.testing.assert_close(ops.self_attention(x, w, (cos, sin), 2, backend="fused"), want)
    assert len(called) == (1 if DEVICE == "cuda" else 0)
    if DEVICE == "cuda":
        with pytest.raises(FusedUnavailableError, match=r"cos must be a float32 \(S, D\)"):
            ops.self_attention(x, w, (cos.double(), sin), 2, backend="fused")


def test_kept_bad_input_names_the_problem(monkeypatch):
    # the same refusals as the recomputing op's, reached without recompute (Triton's interpreter stands in for a GPU)
    monkeypatch.setattr(trm_fast.backend, "recomputes_in_ops", lambda backend, device: backend != "reference")
    x, w, cos, sin, _ = _inputs((2, 9, 16, 2, 8), torch.float32, DEVICE, seed=8)
    x.requires_grad_(True)
    for args, match in _bad_calls(x, w, cos, sin):
        with pytest.raises(FusedUnavailableError, match=match):
            ops.self_attention(*args, 2, backend="fused")


def test_fused_backward_dispatch_and_refusals(monkeypatch):
    # self_attention asks the training op for trm_fast's attention backward where AUTO_OPS names
    # `attention_backward` and the kernel takes the shape; elsewhere PyTorch's backward, without a warning
    called = _spy(monkeypatch, "kept_attention_fused")
    monkeypatch.setattr(trm_fast.backend, "recomputes_in_ops", lambda backend, device: backend != "reference")
    x, w, cos, sin, _ = _inputs((2, 9, 16, 2, 32), torch.float16, DEVICE, seed=9)
    x.requires_grad_(True)
    cases = [(trm_fast.backend.AUTO_OPS | {"attention_backward"}, "fused"),
             (trm_fast.backend.AUTO_OPS - {"attention_backward"}, "fused")]
    if DEVICE == "cuda":  # 'auto' takes no kernel under the CPU interpreter
        cases.append((trm_fast.backend.AUTO_OPS | {"attention_backward", "kept_attention"}, "auto"))
    for auto_ops, backend in cases:
        monkeypatch.setattr(trm_fast.backend, "AUTO_OPS", auto_ops)
        ops.self_attention(x, w, (cos, sin), 2, backend=backend).sum().backward()
        assert called.pop()[-1] is ("attention_backward" in auto_ops)
    monkeypatch.setattr(trm_fast.backend, "AUTO_OPS", trm_fast.backend.AUTO_OPS | {"attention_backward"})
    long_x, long_cs = _inputs((1, 129, 16, 1, 32), torch.float16, DEVICE, seed=10)[0], None
    x8, w8, cos8, sin8, _ = _inputs((2, 9, 16, 2, 16), torch.float16, DEVICE, seed=11)
    x32, w32, cos32, sin32, _ = _inputs((2, 9, 16, 2, 32), torch.float32, DEVICE, seed=12)
    x32.requires_grad_(True)
    long_x.requires_grad_(True)
    x8.requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second kernel declines silently
        for args in ((long_x, w[:96], long_cs), (x8, w8, (cos8, sin8)), (x32, w32, (cos32, sin32))):
            ops.self_attention(*args, 1 if args[0] is long_x else 2, backend="fused")
            assert called.pop()[-1] is False
    assert fused_backward_unsupported(long_x, w[:96], 1) == "the sequence must fit one tile, S <= 128, got 129"
    assert fused_backward_unsupported(x8, w8, 2) == ("the head dim D must be a power of two from 32 to 128 (a half "
                                                     "is a dot's K), got 16")
    assert fused_backward_unsupported(x, torch.zeros(3 * 2 * 48, 16), 2).endswith("got 48")
    assert fused_backward_unsupported(x, torch.zeros(3 * 256, 16), 1).endswith("got 256")
    assert fused_backward_unsupported(x32, w32, 2) == ("the kernel runs 16-bit inputs (bfloat16, float16), got "
                                                       "torch.float32")
    assert fused_backward_unsupported(x, w, 2) is None
