"""The attention layer for a few puzzles in one persistent kernel (kernels/small_layer.py) against the official layer:
on the GPU persistent (grid barriers) and phase by phase, on the CPU under Triton's interpreter phase by phase
(fp32/fp16 only: the interpreter is not trusted with bf16 dots); the op's dispatch and its refusals."""

import pytest
import torch
from helpers import assert_close_at_worst, case_seed, rounding_atol
from trm_fast.models.layers import RotaryEmbedding
from trm_fast import backend
from trm_fast.ops.small_layer import small_layer, small_layer_fused, small_layer_reference, takes, unsupported

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5
# (B, S, D, H, I, rope): sudoku_attn at batch 1, an odd batch, a whole 128-position block, several row blocks
# with rows left over, no RoPE, a narrower model; under the interpreter head dims of 32 and 64, rows that cross
# its 64-row blocks unevenly, one position
SHAPES_GPU = [(1, 97, 512, 8, 1536, True), (3, 97, 512, 8, 1536, True), (2, 128, 512, 8, 1536, True),
              (8, 82, 512, 8, 1536, True), (1, 30, 256, 4, 512, False), (5, 1, 128, 2, 192, True)]
SHAPES_CPU = [(2, 17, 64, 2, 128, True), (1, 9, 128, 2, 64, False), (3, 1, 64, 1, 64, True)]


def _inputs(shape, dtype, device, seed):
    b, s, d, heads, i, rope = shape
    gen = torch.Generator(device="cpu").manual_seed(seed)
    h = torch.randn(b, s, d, generator=gen)
    h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + EPS)  # a layer's input is a norm's output
    weights = [torch.randn(n, k, generator=gen) * k**-0.5 for n, k in ((3 * d, d), (d, d), (2 * i, d), (d, i))]
    tables = RotaryEmbedding(d // heads, s + 3, 10000.0)() if rope else None  # more rows than S, as a model's may
    return [t.to(device, dtype) for t in [h, *weights]], tuple(t.to(device) for t in tables) if rope else None


def _check(shape, dtype, seed, device, persistent, config=None):
    """The kernel (one launch with grid barriers, or its six phases as six launches; tiles and phase E's K split
    from `config` where given) and the op, against the fp64 reference, each within a few times PyTorch's own error
    in this dtype."""
    from trm_fast.kernels.small_layer import small_layer as kernel

    tensors, tables = _inputs(shape, dtype, device, seed)
    heads = shape[3]
    cos, sin = tables if tables else (None, None)
    truth = small_layer_reference(*[t.double() for t in tensors], cos, sin, heads, EPS)
    torch_err = (small_layer_reference(*tensors, cos, sin, heads, EPS).double() - truth).abs().max().item()
    atol = rounding_atol(torch_err, truth, dtype)
    for what, out in ((f"kernel persistent={persistent}", kernel(*tensors, cos, sin, heads, EPS, persistent, config)),
                      ("op", small_layer(*tensors, tables, heads, EPS, backend="fused"))):
        assert out.shape == tensors[0].shape and out.dtype == dtype and out.is_contiguous()
        assert_close_at_worst(out, truth, atol=atol, rtol=0, what=f"{what} {shape} {dtype}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("shape", SHAPES_CPU)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_interpreter_phases_match_reference(shape, dtype):
    _check(shape, dtype, seed=case_seed((shape, str(dtype))), device="cpu", persistent=False)


# tiles other than the defaults: phase E's K split at 4 with a shorter K step and 32-column tiles in C and D;
# 32-row tiles with one-row norm tiles (rows 34 cross them unevenly) and 16-query attention units; no split and
# whole-puzzle attention units; 16-column tiles in C and D; the GEMM phases' tiles loaded by the tensor
# memory accelerator, at the default tiles and at 32-row tiles with a shorter K step (TMA reads the rows past M as
# zeros, where the pointer loads mask them); two programs an SM (the persistent grid up to twice the SMs) by TMA with
# 16-column tiles, more tiles than SMs in phase D at the GPU test's 3 puzzles
CONFIGS = [{"SPLIT": 4, "BK": 32, "BN": 32}, {"BM": 32, "BK": 32, "BR": 4, "BQ": 16},
           {"SPLIT": 1, "BR": 16, "BQ": 128}, {"BN": 16}, {"TMA": True}, {"TMA": True, "BM": 32, "BK": 32, "SPLIT": 4},
           {"TMA": True, "BQ": 32, "BN": 16, "PER_SM": 2}]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU interpreter test; the GPU test covers CUDA")
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_interpreter_tile_configs_match_reference(config):
    _check((2, 17, 64, 2, 256, True), torch.float32, seed=11, device="cpu", persistent=False, config=config)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_gpu_tile_configs_match_reference(config):
    _check((3, 97, 512, 8, 1536, True), torch.bfloat16, seed=torch.seed() % 2**31, device="cuda", persistent=True,
           config=config)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", SHAPES_GPU)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("persistent", [True, False])
def test_gpu_matches_reference(shape, dtype, persistent):
    _check(shape, dtype, seed=torch.seed() % 2**31, device="cuda", persistent=persistent)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_launches_chain_and_replay():
    """Forty-two persistent launches back to back, then the same replayed from a CUDA graph: each leaves the barrier
    counters zeroed for the next, so every launch gives the eager layer's bits."""
    from trm_fast.kernels.small_layer import small_layer as kernel

    tensors, tables = _inputs((1, 97, 512, 8, 1536, True), torch.bfloat16, "cuda", seed=3)
    h, *weights = tensors

    def chain(x):
        for _ in range(42):
            x = kernel(x, *weights, *tables, 8, EPS, True)
        return x

    expected = chain(h)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        chain(h)  # warm: the allocator and Triton's compile outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            replayed = chain(h)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(replayed, expected)


def test_programs_per_sm_must_all_fit_at_once():
    # the grid barrier waits for every program: a persistent grid larger than what the SMs hold at once would hang,
    # so PER_SM is refused where its programs may not fit (registers bounded by warps, shared memory as compiled)
    from trm_fast.kernels.small_layer import resident_unsupported

    assert resident_unsupported(2, 4, 80 * 1024, 233472) is None
    assert resident_unsupported(1, 8, 128 * 1024, 233472) is None
    assert "at most 8 warps an SM" in resident_unsupported(3, 4, 1024, 233472)
    assert "at most 8 warps an SM" in resident_unsupported(2, 8, 1024, 233472)
    assert "do not fit an SM's 233472 B" in resident_unsupported(2, 4, 128 * 1024, 233472)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_refuses_more_programs_per_sm_than_fit():
    from trm_fast.kernels.small_layer import small_layer as kernel

    tensors, tables = _inputs((1, 97, 512, 8, 1536, True), torch.bfloat16, "cuda", seed=5)
    with pytest.raises(ValueError, match="PER_SM=2: .*do not fit an SM's"):
        kernel(*tensors, *tables, 8, EPS, True, {"PER_SM": 2})  # 64-query units: 128 KiB of shared memory each
    with pytest.raises(ValueError, match="PER_SM=3: .*at most 8 warps an SM"):
        kernel(*tensors, *tables, 8, EPS, True, {"TMA": True, "BQ": 32, "PER_SM": 3})


def test_tma_refuses_an_input_that_is_not_16_byte_aligned():
    # a descriptor's base must be 16-byte aligned; a view into a larger tensor may start anywhere
    from trm_fast.kernels.small_layer import small_layer as kernel

    (h, *weights), tables = _inputs((2, 9, 64, 2, 128, True), torch.float32, DEVICE, seed=7)
    shifted = torch.empty(h.numel() + 1, dtype=h.dtype, device=h.device)[1:].view_as(h).copy_(h)
    with pytest.raises(ValueError, match="TMA needs h to start at a 16-byte aligned address"):
        kernel(shifted, *weights, *tables, 2, EPS, False, {"TMA": True})


def test_bad_inputs_name_the_problem():
    (h, w_qkv, w_o, w_gu, w_down), (cos, sin) = _inputs((2, 9, 64, 2, 128, True), torch.float32, DEVICE, seed=6)
    ok = lambda **c: unsupported(*[c.get(n, t) for n, t in (("h", h), ("w_qkv", w_qkv), ("w_o", w_o),  # noqa: E731
                                                             ("w_gu", w_gu), ("w_down", w_down), ("cos", cos),
                                                             ("sin", sin))], c.get("heads", 2), "fused")
    assert ok() is None
    assert "h's dtype and device" in ok(w_o=w_o.double())
    assert "bfloat16, float16 or float32" in ok(h=h.double(), w_qkv=w_qkv.double(), w_o=w_o.double(),
                                                w_gu=w_gu.double(), w_down=w_down.double())
    assert "non-empty (B, S, D)" in ok(h=h[0])
    assert "multiples of 64" in ok(h=h[..., :48])
    assert "must divide D (64)" in ok(heads=3)
    assert "power of two, 32 at least; got 16" in ok(heads=4)
    many = torch.zeros(1, 129, 64, device=DEVICE)
    assert "129 positions; a program holds at most 128" in ok(h=many)
    assert "qkv_weight must have shape (192, 64)" in ok(w_qkv=w_qkv[:128])
    assert "gate_up_weight must have shape (256, 64)" in ok(w_gu=w_gu[:, :32].repeat(1, 2)[:200])
    assert "o_weight must be contiguous" in ok(w_o=w_o.t())
    assert "h must be contiguous" in ok(h=h.transpose(0, 1).contiguous().transpose(0, 1))
    assert "given both or neither" in ok(cos=None)
    assert "cos must be (>= S, D / num_heads) = (>= 9, 32)" in ok(cos=cos[:4])
    assert "sin must be float32" in ok(sin=sin.double())
    with pytest.raises(RuntimeError, match="small_layer cannot run here: .*must divide D"):
        small_layer(h, w_qkv, w_o, w_gu, w_down, (cos, sin), 3, EPS, backend="fused")


def test_opcheck():
    tensors, tables = _inputs((2, 9, 64, 2, 128, True), torch.float32, DEVICE, seed=4)
    torch.library.opcheck(small_layer_fused, (*tensors, *tables, 2, EPS))


@pytest.mark.parametrize("model", ["TRM", "HRM"])
def test_model_block_runs_it_for_one_puzzle(model, monkeypatch):
    """A TRM or HRM (its H and L modules share the Block) whose Block runs the whole layer as the kernel (AUTO_OPS
    names `small_layer` by default; 'fused') against the same weights on 'reference', forward without grad; and
    `takes` refusing what it should."""
    import trm_fast
    from helpers import make_batch, tiny_config

    torch.manual_seed(0)
    cfg = tiny_config(hidden_size=64, puzzle_emb_ndim=64, num_heads=2, forward_dtype="float32", H_layers=2)
    cls = getattr(trm_fast, model)
    ref = cls(dict(cfg, backend="reference")).to(DEVICE)
    fused = cls(dict(cfg, backend="fused")).to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    batch = {k: v.to(DEVICE) for k, v in make_batch(cfg).items()}
    assert "small_layer" in backend.AUTO_OPS
    calls = []
    monkeypatch.setattr(trm_fast.ops, "small_layer", lambda *a, **k: calls.append(1) or small_layer(*a, **k))
    with torch.no_grad():
        outs = [m(carry=m.initial_carry(batch), batch=batch)[1] for m in (ref, fused)]
    assert calls, "the Block never ran the whole-layer kernel"
    for key in ("logits", "q_halt_logits"):
        assert_close_at_worst(outs[1][key], outs[0][key], atol=1e-4, rtol=1e-4, what=key)
    (h, *weights), tables = _inputs((2, 9, 64, 2, 128, True), torch.float32, DEVICE, seed=5)
    assert takes(h, *weights, tables, 2, "fused")
    assert not takes(h, *weights, tables, 2, "reference")
    assert not takes(h.requires_grad_(), *weights, tables, 2, "fused")  # autograd records: the sublayers' ops
    assert not takes(torch.zeros(11, 97, 64, device=DEVICE), *weights, tables, 2, "fused")  # past MAX_ROWS
    assert not takes(h.detach(), *weights, tables, 3, "fused")  # the kernel cannot: no error, the other ops run
    monkeypatch.setattr(backend, "AUTO_OPS", backend.AUTO_OPS - {"small_layer"})
    assert not takes(h.detach(), *weights, tables, 2, "fused")
