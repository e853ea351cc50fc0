"""The down projection's backward with SwiGLU's backward in its epilogue (kernels/down_swiglu_backward.py) against
the unfused pair it replaces (dh = dy W, then SwiGLU's backward) and the fp64 truth: on the GPU in its three forms,
and on the CPU under Triton's interpreter (fp32/fp16 only); in place, into poisoned outputs, h's bits,
and the inputs it refuses."""

import pytest
import torch
from helpers import assert_close_at_worst, case_seed

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (M, K, I): sudoku_attn's MLP at batch 768 and 1, HRM's 82 positions, and odd sizes: rows and columns that are
# not multiples of a tile, K not a multiple of BLOCK_K, one row
SHAPES_GPU = [(768 * 97, 512, 1536), (97, 512, 1536), (3 * 82, 512, 1536), (45, 40, 24), (1, 16, 8)]
SHAPES_CPU = [(97, 64, 48), (45, 40, 24), (70, 32, 72), (1, 16, 8)]


# one config of each form pinned (the autotuner picks one per shape): on the GPU by tile, programs per SM and how
# gate and up load (LOAD); under the interpreter its one tile in each LOAD
FORMS_GPU = {"64x64_load1": dict(BLOCK_M=64, BLOCK_N=64), "64x128_load0": dict(BLOCK_N=128),
             "128x64_load0": dict(BLOCK_M=128)}
FORMS_CPU = {"load0": dict(LOAD=0), "load1": dict(LOAD=1)}
FORMS = FORMS_GPU if DEVICE == "cuda" else FORMS_CPU


@pytest.fixture(params=list(FORMS))
def kernel_form(request, monkeypatch):
    from trm_fast.kernels.down_swiglu_backward import _down_swiglu_backward_kernel as kernel

    form = FORMS[request.param]
    if DEVICE == "cpu":
        picked = [type(kernel.configs[0])(dict(kernel.configs[0].kwargs, **form), num_warps=4, num_stages=1,
                                          pre_hook=kernel.configs[0].pre_hook)]
    else:
        picked = [c for c in kernel.configs if all(c.kwargs[key] == value for key, value in form.items())][:1]
    assert picked, f"no config of the form {request.param}"
    monkeypatch.setattr(kernel, "configs", picked)
    monkeypatch.setattr(kernel, "cache", {})
    return request.param


def _inputs(m, k, inner, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    dy = torch.randn(m, k, generator=gen)
    weight = torch.randn(k, inner, generator=gen) * k**-0.5
    gate_up = torch.randn(m, 2 * inner, generator=gen) * 2
    return (t.to(DEVICE, dtype) for t in (dy, weight, gate_up))


def _swiglu_grads(dh, gate_up):
    """SwiGLU's backward and forward in fp32 from dh and gate_up (any dtype): (dgate_up, h)."""
    g, u = gate_up.float().chunk(2, dim=-1)
    s = torch.sigmoid(g)
    dh = dh.float()
    return torch.cat([dh * u * s * (1 + g * (1 - s)), dh * g * s], dim=-1), g * s * u


def _check(m, k, inner, dtype, seed, in_place=False):
    from trm_fast.kernels.down_swiglu_backward import down_swiglu_backward

    dy, weight, gate_up = _inputs(m, k, inner, dtype, seed)
    truth = _swiglu_grads(dy.double() @ weight.double(), gate_up.double())
    torch_ = [t.to(dtype) for t in _swiglu_grads(dy @ weight, gate_up)]  # the pair in dtype: dh rounded first
    gate_up_in = gate_up.clone()
    if in_place:
        dgate_up, h = down_swiglu_backward(dy, weight, gate_up, dgate_up=gate_up)
        assert dgate_up.data_ptr() == gate_up.data_ptr()
    else:  # poisoned outputs: an element left unwritten reads NaN
        dgate_up = torch.full_like(gate_up, float("nan"))
        h = torch.full((m, inner), float("nan"), device=DEVICE, dtype=dtype)
        assert down_swiglu_backward(dy, weight, gate_up, dgate_up=dgate_up, h=h) == (dgate_up, h)
        assert torch.equal(gate_up, gate_up_in)
    for name, got, want, p in (("dgate_up", dgate_up, truth[0], torch_[0]), ("h", h, truth[1], torch_[1])):
        assert got.dtype == dtype and got.shape == want.shape
        torch_err = (p.double() - want).abs().max().item()
        atol = 3 * torch_err + torch.finfo(dtype).eps * want.abs().max().item() + 1e-4
        assert_close_at_worst(got, want, atol=atol, rtol=0, what=f"{name} {(m, k, inner)} {dtype}")
    # h from gate_up alone: the bits of SwiGLU's forward kernel, which the weight's gradient saw before
    from trm_fast.kernels.swiglu import swiglu_fwd

    assert torch.equal(h, swiglu_fwd(gate_up_in))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_interpreter_matches_reference(shape, dtype, kernel_form):
    _check(*shape, dtype, seed=case_seed((shape, str(dtype), kernel_form)))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", SHAPES_GPU, ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gpu_matches_reference(shape, dtype, kernel_form):
    _check(*shape, dtype, seed=torch.seed() % 2**31)


@pytest.mark.parametrize("in_place", [False, True], ids=["new_outputs", "in_place"])
def test_in_place_and_autotuned(in_place):
    # the autotuner's own choice (every config on a GPU), written over gate_up or into new tensors
    dtype = torch.float16 if DEVICE == "cpu" else torch.bfloat16
    _check(130, 64, 96, dtype, seed=case_seed(("autotuned", in_place)), in_place=in_place)


@pytest.mark.gpu
def test_first_cuda_call_of_a_thread():
    # autograd runs the backward on a thread of its own, where this kernel may make the first CUDA call: Triton 3.6
    # built the tensor maps before any context was current there ('invalid device context', tma_gemm.ensure_context)
    import threading

    from trm_fast.kernels.down_swiglu_backward import down_swiglu_backward

    dy, weight, gate_up = _inputs(97, 64, 48, torch.bfloat16, seed=5)
    outs = torch.empty_like(gate_up), torch.empty(97, 48, device=DEVICE, dtype=torch.bfloat16)  # no allocation there
    want = down_swiglu_backward(dy, weight, gate_up)
    failed = []

    def run():
        try:
            down_swiglu_backward(dy, weight, gate_up, *outs)
        except Exception as error:  # noqa: BLE001 (reported below, on the test's thread)
            failed.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert not failed, failed
    assert torch.equal(outs[0], want[0]) and torch.equal(outs[1], want[1])


def test_bad_input():
    from trm_fast.kernels.down_swiglu_backward import down_swiglu_backward

    dy, weight, gate_up = _inputs(6, 16, 8, torch.float16, seed=0)
    with pytest.raises(ValueError, match=r"need dy \(M, K\), weight \(K, I\) and gate_up \(M, 2I\)"):
        down_swiglu_backward(dy, weight.t(), gate_up)
    with pytest.raises(ValueError, match=r"need dy .*gate_up \(6, 15\)"):
        down_swiglu_backward(dy, weight, gate_up[:, :15])
    with pytest.raises(ValueError, match=r"h must be a \(6, 8\) tensor of torch.float16"):
        down_swiglu_backward(dy, weight, gate_up, h=torch.empty(6, 8, device=DEVICE))
    with pytest.raises(ValueError, match=r"dgate_up must be a \(6, 16\) tensor"):
        down_swiglu_backward(dy, weight, gate_up, dgate_up=gate_up[:5])
    with pytest.raises(ValueError, match="dy must be 2-D with unit stride along its last axis"):
        down_swiglu_backward(torch.randn(16, 6, device=DEVICE, dtype=torch.float16).t(), weight, gate_up)
    with pytest.raises(ValueError, match="the up half of gate_up must start 16-byte aligned: I = 4"):
        down_swiglu_backward(dy, weight[:, :4], gate_up[:, :8].contiguous())
    with pytest.raises(ValueError, match="weight must be .*16-byte aligned rows and address .*address not"):
        down_swiglu_backward(dy, torch.randn(16 * 8 + 1, device=DEVICE, dtype=torch.float16)[1:].view(16, 8),
                             gate_up)
