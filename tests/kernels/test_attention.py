"""The Triton attention kernel (RoPE on load) against its reference: on the GPU, and on the CPU under
Triton's interpreter (fp32/fp16 only: the interpreter is not trusted with bf16; tests/conftest.py turns it on)."""

import copy
import warnings

import pytest
import torch
import trm_fast
from helpers import assert_close_at_worst, case_seed
from trm_fast import ops
from trm_fast.backend import FusedUnavailableError
from trm_fast.models.layers import Attention, RotaryEmbedding
from trm_fast.ops import attention as attention_ops
from trm_fast.ops.attention import rope_attention_fused, rope_attention_reference, unsupported

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (B, S, H, D): sudoku_attn at a test-sized and the real batch, batch 1, HRM's Sudoku (S 82), ARC (S 916)
SHAPES_GPU = [(64, 97, 8, 64), (768, 97, 8, 64), (1, 97, 8, 64), (5, 82, 8, 64), (2, 916, 8, 64)]
# the interpreter runs key blocks of 32: 97 and 33 end in a partial block, 5 and 1 are a single one
SHAPES_CPU = [(1, 97, 2, 64), (3, 5, 1, 32), (2, 33, 3, 32), (1, 1, 1, 64)]


def _tables(s, d, device):
    return tuple(t.to(device) for t in RotaryEmbedding(d, s, 10000.0)())


def _qkv(b, s, h, d, dtype, device, spare_heads=0):
    """qkv (B, S, 3H, D) as the model's projection makes it; with spare heads, a view of a wider
    projection, so that the heads' stride is not 3H*D away from the next position's."""
    full = torch.randn(b, s, 3 * h + spare_heads, d, device=device).to(dtype)
    return full[:, :, spare_heads:]


def _fp64_truth(qkv, cos, sin, h):
    tables = (None, None) if cos is None else (cos.double(), sin.double())
    return rope_attention_reference(qkv.double(), *tables, h)


def _assert_matches_truth(out, qkv, cos, sin, h, what):
    truth = _fp64_truth(qkv, cos, sin, h)
    # tolerance: twice PyTorch's own error in this dtype against fp64, plus a small atol
    torch_err = (rope_attention_reference(qkv, cos, sin, h).double() - truth).abs().max().item()
    assert_close_at_worst(out, truth, atol=2 * torch_err + 1e-5, rtol=0, what=what)


def _check(shape, dtype, rope, seed, device, tma=None, any_tables=False):
    """The op (tma None: the pointer kernel) or one kernel (True: the persistent TMA one, False: pointers);
    `any_tables`: tables whose halves differ, unlike RoPE's (the kernels then read both halves)."""
    from trm_fast.kernels.attention import rope_attention_fwd

    b, s, h, d = shape
    torch.manual_seed(seed)
    qkv = _qkv(b, s, h, d, dtype, device)
    cos, sin = _tables(s, d, device) if rope else (None, None)
    if any_tables:
        cos, sin = torch.rand(s, d, device=device), torch.rand(s, d, device=device)
    out = rope_attention_fused(qkv, cos, sin, h) if tma is None else rope_attention_fwd(qkv, cos, sin, h, tma=tma)
    assert out.shape == (b, s, h * d) and out.dtype == dtype and out.is_contiguous()
    _assert_matches_truth(out, qkv, cos, sin, h, what=f"forward {shape} {dtype} rope={rope} tma={tma} seed={seed}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("tma", [True, False], ids=["tma", "pointer"])
@pytest.mark.parametrize("rope", [True, False], ids=["rope", "no_rope"])
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_matches_reference(shape, dtype, rope, tma):
    _check(shape, dtype, rope, seed=case_seed((shape, str(dtype), rope)), device="cpu", tma=tma)


@pytest.mark.gpu
@pytest.mark.parametrize("rope", [True, False], ids=["rope", "no_rope"])
@pytest.mark.parametrize("shape", [s for s in SHAPES_GPU if s[1] <= 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_tma_kernel_matches_reference(shape, dtype, rope):
    _check(shape, dtype, rope, seed=torch.seed() % 2**31, device="cuda", tma=True)


@pytest.mark.parametrize("tma", [True, False], ids=["tma", "pointer"])
def test_tables_with_unequal_halves_take_the_general_path(tma):
    from trm_fast.kernels.rope_tables import equal_halves

    assert equal_halves(*_tables(33, 32, DEVICE))
    shape = (3, 97, 2, 64) if DEVICE == "cuda" else (2, 33, 3, 32)
    _check(shape, torch.float32, True, seed=case_seed(tma), device=DEVICE, tma=tma, any_tables=True)


def test_tma_refuses_what_it_cannot_load():
    from trm_fast.kernels.attention import rope_attention_fwd

    long = _qkv(1, 129, 1, 32, torch.float32, DEVICE)  # past one block of 128 positions
    unpacked = torch.randn(2, 9, 6, 40, device=DEVICE)[..., :32]  # gaps between the heads of a position
    spread = _qkv(2, 9, 2, 32, torch.float32, DEVICE, spare_heads=5)  # heads of a wider projection: loadable
    for qkv in (long, unpacked):
        with pytest.raises(ValueError, match="tma=True needs S <= 128"):
            rope_attention_fwd(qkv, None, None, qkv.shape[2] // 3, tma=True)
    _assert_matches_truth(rope_attention_fwd(spread, None, None, 2, tma=True), spread, None, None, 2, "wider")


@pytest.mark.gpu
@pytest.mark.parametrize("rope", [True, False], ids=["rope", "no_rope"])
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_matches_reference(shape, dtype, rope):
    _check(shape, dtype, rope, seed=torch.seed() % 2**31, device="cuda")


def test_strided_inputs_give_the_reference_layout():
    b, s, h, d = 2, 37, 2, 32
    qkv = _qkv(b, s, h, d, torch.float32, DEVICE, spare_heads=5)  # heads of a wider projection
    assert not qkv.is_contiguous() and qkv.stride(-1) == 1
    # and a batch-major view of a sequence-major buffer: every stride but D's differs from the model's
    swapped = torch.randn(s, b, 3 * h, d, device=DEVICE).transpose(0, 1)
    cos, sin = _tables(s, d, DEVICE)
    # the kernel always writes (B, S, H*D) contiguous: the reference's layout for the model's qkv
    # (for other layouts SDPA's output, and so the reference's, follows the input's)
    assert rope_attention_reference(_qkv(b, s, h, d, torch.float32, DEVICE), cos, sin, h).is_contiguous()
    for x in (qkv, swapped):
        want = rope_attention_reference(x, cos, sin, h)
        got = ops.rope_attention(x, (cos, sin), h, backend="fused")
        assert got.shape == want.shape == (b, s, h * d) and got.is_contiguous()
        _assert_matches_truth(got, x, cos, sin, h, what=f"strides {x.stride()}")


def test_poisoned_output_is_fully_written():
    from trm_fast.kernels.attention import rope_attention_fwd

    # S = 71 and 45 are multiples of no tile (32, 64, 128): the last query and key blocks have tails
    for b, s, h, d in [(3, 71, 3, 32), (1, 45, 1, 32)]:
        qkv = _qkv(b, s, h, d, torch.float32, DEVICE)
        cos, sin = _tables(s, d, DEVICE)
        out = torch.full((b, s, h * d), float("nan"), device=DEVICE)
        rope_attention_fwd(qkv, cos, sin, h, out=out)
        assert torch.isfinite(out).all()
        _assert_matches_truth(out, qkv, cos, sin, h, what=f"poisoned {(b, s, h, d)}")


def test_opcheck():
    # small, fp32: under the interpreter opcheck's several calls stay quick
    qkv = _qkv(2, 9, 2, 32, torch.float32, DEVICE)
    cos, sin = _tables(9, 32, DEVICE)
    torch.library.opcheck(rope_attention_fused, (qkv, cos, sin, 2))
    torch.library.opcheck(rope_attention_fused, (qkv, None, None, 2))


@pytest.mark.gpu
def test_opcheck_and_compile_and_graph_capture():
    qkv = _qkv(4, 97, 8, 64, torch.bfloat16, "cuda")
    cos, sin = _tables(97, 64, "cuda")
    torch.library.opcheck(rope_attention_fused, (qkv, cos, sin, 8))
    compiled = torch.compile(lambda t: ops.rope_attention(t, (cos, sin), 8, backend="fused"), fullgraph=True)
    torch.testing.assert_close(compiled(qkv), rope_attention_fused(qkv, cos, sin, 8))
    static_in = qkv.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        rope_attention_fused(static_in, cos, sin, 8)  # warm-up (autotunes and compiles) outside capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = rope_attention_fused(static_in, cos, sin, 8)
    static_in.copy_(torch.randn_like(static_in))
    graph.replay()
    torch.testing.assert_close(static_out, rope_attention_reference(static_in, cos, sin, 8), atol=2e-2, rtol=2e-2)


def test_model_attention_fused_matches_reference_and_trains_on_the_reference(monkeypatch):
    torch.manual_seed(0)
    fused, ref = Attention(64, 2, backend="fused").to(DEVICE), Attention(64, 2, backend="reference").to(DEVICE)
    ref.load_state_dict(fused.state_dict())
    x = torch.randn(3, 21, 64, device=DEVICE)
    cos_sin = _tables(21, 32, DEVICE)
    calls = []

    def counting(*args):
        calls.append(1)
        return rope_attention_fused(*args)

    monkeypatch.setattr(attention_ops, "rope_attention_fused", counting)
    exact = copy.deepcopy(ref).double()
    with torch.no_grad():
        for tables in (cos_sin, None):
            truth = exact(x.double(), tables and tuple(t.double() for t in tables))
            torch_err = (ref(x, tables).double() - truth).abs().max().item()
            assert_close_at_worst(fused(x, tables), truth, atol=2 * torch_err + 1e-5, rtol=0, what=f"model rope={bool(tables)}")
    assert len(calls) == 2
    # with autograd recording, the reference runs (no fused backward yet): same result, gradients flow
    out = fused(x, cos_sin)
    assert len(calls) == 2
    out.square().sum().backward()
    ref(x, cos_sin).square().sum().backward()
    assert torch.equal(out, ref(x, cos_sin))
    assert torch.equal(fused.qkv_proj.weight.grad, ref.qkv_proj.weight.grad)


def test_dispatch_and_bad_input(monkeypatch):
    monkeypatch.setattr(trm_fast.backend, "_warned", set())  # the warning comes once per process: reset it
    from trm_fast.ops.attention import FEW_PUZZLES, SHORT_PUZZLE, auto_op

    qkv = _qkv(2, 5, 2, 48, torch.float32, DEVICE)  # D = 48: no kernel takes it, on any device
    many = _qkv(FEW_PUZZLES + 1, 5, 2, 48, torch.float32, DEVICE)
    assert auto_op(qkv) == "attention_few_puzzles" and auto_op(many) == "attention"
    assert auto_op(_qkv(1, SHORT_PUZZLE + 1, 2, 32, torch.float32, DEVICE)) == "attention"
    assert auto_op(qkv, "fused") == "attention"
    # at many puzzles auto runs the reference, which is faster on the GPUs measured, without a word
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ops.rope_attention(many, None, 2, backend="auto")
    assert not [w for w in caught if "attention" in str(w.message)]
    assert torch.equal(out, rope_attention_reference(many, None, None, 2))
    # at a few it asks for the kernel, and says once why the reference runs where the kernel cannot
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ops.rope_attention(qkv, None, 2, backend="auto")
        ops.rope_attention(qkv, None, 2, backend="auto")
    said = [str(w.message) for w in caught if "attention" in str(w.message)]
    assert len(said) == 1 and "attention_few_puzzles falls back to the reference" in said[0], said
    assert torch.equal(out, rope_attention_reference(qkv, None, None, 2))
    assert torch.equal(ops.rope_attention(qkv, None, 2, backend="reference"), out)

    good = _qkv(2, 5, 2, 32, torch.float32, DEVICE)
    cos, sin = _tables(5, 32, DEVICE)
    bad = [  # (qkv, cos_sin, num_heads, what the message says)
        (good.double(), None, 2, "qkv must be bfloat16, float16 or float32, got torch.float64"),
        (good, None, 0, "num_heads must be positive"),
        (good, None, 3, r"qkv must have shape \(B, S, 3 \* num_heads = 9, D\)"),
        (good[0], None, 2, "qkv must have shape"),
        (qkv, None, 2, "qkv's head dim D must be a power of two from 32 to 128 .* got 48"),
        (_qkv(1, 5, 1, 16, torch.float32, DEVICE), None, 1, "qkv's head dim D must be a power of two"),
        (_qkv(1, 5, 1, 256, torch.float32, DEVICE), None, 1, "qkv's head dim D must be a power of two"),
        (_qkv(0, 5, 2, 32, torch.float32, DEVICE), None, 2, "qkv is empty"),
        (torch.randn(2, 5, 32, 6, device=DEVICE).transpose(2, 3), None, 2, "qkv's last axis must have unit stride"),
        (good, (cos, None), 2, "cos and sin must be given both or neither"),
        (good, (cos.double(), sin), 2, "cos must be float32, got torch.float64"),
        (good, (cos, sin[:4]), 2, r"sin must have shape \(S, D\) = \(5, 32\), got \(4, 32\)"),
        (good, (cos.to("meta"), sin), 2, "cos is on meta"),
    ]
    for x, cos_sin, heads, message in bad:
        with pytest.raises(FusedUnavailableError, match="attention cannot run here: " + message):
            ops.rope_attention(x, cos_sin, heads, backend="fused")
    # the interpreter serves only an explicit 'fused' backend on the CPU; without it the CPU is refused
    monkeypatch.setattr(trm_fast.backend, "interpreting", lambda: False)
    assert unsupported(good.cpu(), None, None, 2, "fused") == "qkv is on cpu, the kernel needs a CUDA device"
