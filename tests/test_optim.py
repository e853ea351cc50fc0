import copy
import io
import math
import os

import pytest
import torch
import torch.multiprocessing as mp
import trm_fast
from helpers import embedding_with_grad, sign_sgd_rank_step
from trm_fast.models import CastedSparseEmbedding


def test_adam_atan2_matches_hand_computation():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(5, 3))
    grads = [torch.randn(5, 3) for _ in range(3)]
    lr, wd, b1, b2 = 0.01, 0.1, 0.9, 0.95
    opt = trm_fast.AdamATan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    w, m, v = p.detach().double().clone(), torch.zeros(5, 3, dtype=torch.float64), torch.zeros(5, 3, dtype=torch.float64)
    for t, g in enumerate(grads, start=1):
        p.grad = g.clone()
        opt.step()
        g = g.double()
        w = w * (1 - lr * wd)
        m = m + (1 - b1) * (g - m)
        v = v + (1 - b2) * (g * g - v)
        w = w - lr / (1 - b1**t) * torch.atan2(m, v.sqrt() / math.sqrt(1 - b2**t))
        torch.testing.assert_close(p.detach().double(), w, rtol=1e-6, atol=1e-7)
    assert opt.state[p]["exp_avg"].dtype == torch.float32 and opt.state[p]["step"].item() == 3


def test_adam_atan2_update_is_bounded_and_skips_params_without_grad():
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.ones(4))
    opt = trm_fast.AdamATan2([a, b], lr=0.1, betas=(0.9, 0.99), weight_decay=0.0)
    a.grad = torch.tensor([1e6, -1e-6, 3.0, 0.0])
    opt.step()
    assert torch.all(a.abs() <= 0.1 * math.pi / 2 / (1 - 0.9) + 1e-6) and a[3] == 0
    assert torch.equal(b, torch.ones(4)) and b not in opt.state


def test_adam_atan2_low_precision_params_keep_fp32_state():
    p = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    opt = trm_fast.AdamATan2([p], lr=0.5, betas=(0.9, 0.95), weight_decay=0.0)
    p.grad = torch.ones(8, dtype=torch.bfloat16)
    opt.step()
    assert p.dtype == torch.bfloat16 and opt.state[p]["exp_avg_sq"].dtype == torch.float32
    # t = 1: m = 0.1, v_hat = 1, so p = 1 - (0.5 / 0.1) * atan(0.1), rounded to bf16
    torch.testing.assert_close(p.float(), torch.full((8,), 1 - 5 * math.atan(0.1)), atol=4e-3, rtol=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), "lr must be >= 0"), (dict(betas=(0.9, 1.0)), "betas must be two numbers in"),
    (dict(weight_decay=-0.1), "weight_decay must be >= 0")])
def test_adam_atan2_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        trm_fast.AdamATan2([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_adam_atan2_tensor_lr_needs_capturable():
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="lr as a tensor .* needs capturable=True"):
        trm_fast.AdamATan2([p], lr=torch.tensor(0.1))
    with pytest.raises(ValueError, match="lr as a tensor must hold one number"):
        trm_fast.AdamATan2([p], lr=torch.tensor([0.1, 0.2]), capturable=True)
    opt = trm_fast.AdamATan2([p], lr=0.1, capturable=True)
    opt.param_groups[0]["lr"] = torch.tensor(0.1, device="meta")  # not the params' device
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="lr as a tensor needs capturable=True and the params' device cpu"):
        opt.step()


@torch.no_grad()
def reference_adam_atan2_step(params, states, lr, wd, betas):
    """The per-parameter AdamATan2.step() that the multi-tensor one replaced, kept as its reference."""
    beta1, beta2 = betas
    for p in params:
        if p.grad is None:
            continue
        state = states.setdefault(p, {})
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
        state["step"] += 1
        t = state["step"].item()
        m, v = state["exp_avg"], state["exp_avg_sq"]
        g = p.grad.to(torch.float32)
        p32 = p.to(torch.float32)
        p32.mul_(1 - lr * wd)
        m.lerp_(g, 1 - beta1)
        v.lerp_(g.square(), 1 - beta2)
        p32.add_(torch.atan2(m, v.sqrt() / math.sqrt(1 - beta2**t)), alpha=-lr / (1 - beta1**t))
        if p32 is not p:
            p.copy_(p32)


# Small fp32 and bf16 tensors share a pass; the two big ones (> 65536 elements) get a CPU pass of their own.
SHAPES_DTYPES = [((7, 5), torch.float32), ((3,), torch.float32), ((300, 256), torch.float32),
                 ((6, 4), torch.bfloat16), ((260, 256), torch.bfloat16), ((9,), torch.float32)]
LRS = [1e-2, 3e-3, 0.0, 5e-2, 2e-2]


def make_params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(d)) for s, d in SHAPES_DTYPES]


def set_grads(params, step, seed=1):
    """Fresh gradients; the second param has none at steps 1 and 3 (so its step count lags), the last none ever."""
    g = torch.Generator().manual_seed(seed * 1000 + step)
    for i, p in enumerate(params):
        skip = i == len(params) - 1 or (i == 1 and step in (1, 3))
        p.grad = None if skip else (torch.randn(p.shape, generator=g) * 10 ** (i - 2)).to(p.dtype)


def run_steps(opt, params, steps):
    group = opt.param_groups[0]
    for step in steps:
        set_grads(params, step)
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(LRS[step - 1])  # as before a graph replay: the same tensor, a new value
        else:
            group["lr"] = LRS[step - 1]  # as the trainer's schedule sets it
        opt.step()


def tolerance(dtype, exact):
    if exact:
        return dict(rtol=0, atol=0)
    # bf16 params round the same fp32 update, except where it lands next to a rounding boundary: one bf16 ulp
    return dict(rtol=1e-6, atol=1e-7) if dtype == torch.float32 else dict(rtol=8e-3, atol=0)


def test_adam_atan2_multi_tensor_equals_the_per_parameter_reference_bit_for_bit():
    params, ref = make_params(), make_params()
    opt, ref_states = trm_fast.AdamATan2(params, betas=(0.9, 0.95), weight_decay=0.1), {}
    for step, lr in enumerate(LRS, start=1):
        run_steps(opt, params, [step])
        set_grads(ref, step)
        reference_adam_atan2_step(ref, ref_states, lr, 0.1, (0.9, 0.95))
        for p, r in zip(params, ref):
            assert p.dtype == r.dtype and torch.equal(p, r), f"param {tuple(p.shape)} {p.dtype} at step {step}"
    assert params[-1] not in opt.state and opt.state[params[1]]["step"].item() == len(LRS) - 2
    for p, r in zip(params[:-1], ref[:-1]):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][key], ref_states[r][key]) and opt.state[p][key].dtype == torch.float32
        assert opt.state[p]["step"].device.type == "cpu"


@pytest.mark.parametrize("lr_as_tensor", [False, True])
def test_adam_atan2_capturable_equals_host_path(lr_as_tensor):
    host, dev = make_params(), make_params()
    host_opt = trm_fast.AdamATan2(host, betas=(0.9, 0.95), weight_decay=0.1)
    lr = torch.tensor(0.0) if lr_as_tensor else 0.0
    dev_opt = trm_fast.AdamATan2(dev, lr=lr, betas=(0.9, 0.95), weight_decay=0.1, capturable=True)
    for step in range(1, len(LRS) + 1):
        run_steps(host_opt, host, [step])
        run_steps(dev_opt, dev, [step])
        for h, d in zip(host, dev):
            torch.testing.assert_close(d, h, **tolerance(h.dtype, exact=False))
    for h, d in zip(host[:-1], dev[:-1]):
        torch.testing.assert_close(dev_opt.state[d]["exp_avg_sq"], host_opt.state[h]["exp_avg_sq"], rtol=1e-6, atol=0)
        assert dev_opt.state[d]["step"].item() == host_opt.state[h]["step"].item()


@pytest.mark.parametrize("capturable", [False, True])
def test_adam_atan2_state_dict_round_trip(capturable):
    params = make_params()
    opt = trm_fast.AdamATan2(params, lr=torch.tensor(0.0) if capturable else 0.0, capturable=capturable)
    run_steps(opt, params, [1, 2])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as a checkpoint does
    resumed = [p.detach().clone().requires_grad_() for p in params]
    lr = torch.tensor(0.0) if capturable else 0.0
    resumed_opt = trm_fast.AdamATan2(resumed, lr=lr, capturable=capturable)
    resumed_opt.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    if capturable:
        assert resumed_opt.param_groups[0]["lr"] is lr  # a captured graph reads this tensor
    for p in resumed[:-1]:
        assert resumed_opt.state[p]["exp_avg"].dtype == torch.float32  # not the bf16 params' dtype
    run_steps(opt, params, [3, 4])
    run_steps(resumed_opt, resumed, [3, 4])
    for p, r in zip(params, resumed):
        assert torch.equal(p, r)


@pytest.mark.parametrize("capturable", [False, True])
def test_adam_atan2_loads_a_checkpoint_of_the_per_parameter_optimizer(capturable):
    # What the per-parameter optimizer's state_dict() held: no "capturable", the step a CPU float tensor.
    ref, ref_states = make_params(), {}
    for step in (1, 2):
        set_grads(ref, step)
        reference_adam_atan2_step(ref, ref_states, LRS[step - 1], 0.1, (0.9, 0.95))
    old = {"state": {i: copy.deepcopy(ref_states[p]) for i, p in enumerate(ref) if p in ref_states},
           "param_groups": [dict(lr=LRS[1], betas=(0.9, 0.95), weight_decay=0.1, params=list(range(len(ref))))]}
    params = [p.detach().clone().requires_grad_() for p in ref]
    opt = trm_fast.AdamATan2(params, capturable=capturable)
    opt.load_state_dict(old)
    assert opt.param_groups[0]["capturable"] is capturable and opt.param_groups[0]["weight_decay"] == 0.1
    for step in (3, 4):
        set_grads(ref, step)
        reference_adam_atan2_step(ref, ref_states, LRS[step - 1], 0.1, (0.9, 0.95))
    run_steps(opt, params, [3, 4])
    for p, r in zip(params, ref):
        torch.testing.assert_close(p, r, **tolerance(p.dtype, exact=not capturable))
    assert old["state"][0]["step"].item() == 2  # stepping on did not count up the loaded checkpoint


@pytest.mark.gpu
def test_adam_atan2_step_replays_in_a_cuda_graph():
    torch.manual_seed(0)
    shapes = [(512, 1536), (1536, 512), (512,), (11, 512)]
    params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in shapes]
    eager = [p.detach().clone().requires_grad_() for p in params]
    lr = torch.tensor(1e-3, device="cuda")
    opt = trm_fast.AdamATan2(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.1, capturable=True)
    eager_opt = trm_fast.AdamATan2(eager, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    for p, e in zip(params, eager):
        p.grad = torch.randn_like(p)  # static gradient tensors: the graph reads these
        e.grad = p.grad.clone()
    # warm up on a side stream (creates the state), then capture one step, as the CUDA-graph docs do
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        opt.step()
    torch.cuda.current_stream().wait_stream(side)
    eager_opt.step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for value in (3e-3, 1e-2, 5e-4):
        for p, e in zip(params, eager):
            p.grad.copy_(torch.randn_like(p))
            e.grad.copy_(p.grad)
        lr.fill_(value)
        graph.replay()
        eager_opt.param_groups[0]["lr"] = value
        eager_opt.step()
    torch.cuda.synchronize()
    for p, e in zip(params, eager):
        torch.testing.assert_close(p, e, rtol=1e-6, atol=1e-6)
    assert opt.state[params[0]]["step"].item() == 4


def test_sign_sgd_sums_duplicate_ids_then_takes_the_sign():
    table = torch.arange(12, dtype=torch.float32).view(4, 3)
    ids = [1, 3, 1]
    grads = torch.tensor([[1.0, -2.0, 0.5], [0.0, 4.0, -1.0], [-3.0, 1.0, 0.5]])
    emb = embedding_with_grad(ids, grads, table)
    trm_fast.SignSGD(emb.buffers(), lr=0.5, weight_decay=0.1).step()
    expected = table.clone()
    decay = 1 - 0.5 * 0.1
    expected[1] = table[1] * decay - 0.5 * torch.sign(grads[0] + grads[2])  # [-2, -1, 1] summed
    expected[3] = table[3] * decay - 0.5 * torch.sign(grads[1])
    torch.testing.assert_close(emb.weights, expected)  # rows 0 and 2 untouched: no decay either


def test_sign_sgd_takes_the_module_and_refuses_other_params():
    emb = embedding_with_grad([0], torch.ones(1, 2), torch.zeros(2, 2))
    trm_fast.SignSGD(emb, lr=1.0, weight_decay=0.0).step()
    assert torch.equal(emb.weights[0], torch.tensor([-1.0, -1.0]))
    with pytest.raises(ValueError, match="three buffers"):
        trm_fast.SignSGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        trm_fast.SignSGD(emb, lr=-1.0)


def test_sign_sgd_gathers_across_ranks_like_one_process():
    torch.manual_seed(0)
    table, ids, grads = torch.randn(5, 4), [0, 2, 2, 4, 0, 1], torch.randn(6, 4)
    single = embedding_with_grad(ids, grads, table)
    trm_fast.SignSGD(single.buffers(), lr=0.25, weight_decay=0.5).step()
    port = 29000 + os.getpid() % 1000
    out = mp.Manager().dict()
    mp.spawn(sign_sgd_rank_step, args=(2, port, ids, grads, table, out), nprocs=2, join=True)
    for rank in range(2):
        torch.testing.assert_close(out[rank], single.weights)


def test_moved_embedding_stays_optimisable():
    # model.to(...) must keep local_weights a leaf that requires grad, or no optimizer takes it
    emb = CastedSparseEmbedding(4, 3, 2, init_std=0, cast_to=torch.float32).to(torch.float64)
    assert emb.local_weights.is_leaf and emb.local_weights.requires_grad
    trm_fast.SignSGD(emb.buffers(), lr=0.1)


@torch.no_grad()
def reference_sign_sgd_step(weights, grads, ids, lr, wd):
    """The torch.unique-based SignSGD step that the sync-free one replaced, kept as its reference."""
    unique_ids, slot = ids.unique(return_inverse=True)
    summed = grads.new_zeros((unique_ids.shape[0], grads.shape[1])).index_add_(0, slot, grads)
    rows = weights[unique_ids]
    rows.mul_(1.0 - lr * wd).add_(torch.sign(summed), alpha=-lr)
    weights[unique_ids] = rows


@pytest.mark.parametrize("lr_as_tensor", [False, True])
def test_sign_sgd_equals_the_unique_based_reference(lr_as_tensor):
    g = torch.Generator().manual_seed(0)
    table, ids = torch.randn(40, 8, generator=g), torch.randint(0, 12, (62,), generator=g).tolist() + [30, 30]
    grads = torch.randn(64, 8, generator=g)
    grads[63] = -grads[62]  # id 30's gradients cancel: its row only decays
    emb = embedding_with_grad(ids, grads, table)
    trm_fast.SignSGD(emb.buffers(), lr=torch.tensor(0.3) if lr_as_tensor else 0.3, weight_decay=0.2).step()
    expected = table.clone()
    reference_sign_sgd_step(expected, grads, torch.tensor(ids, dtype=torch.int32), 0.3, 0.2)
    # a float lr gives the same bits; an fp32 tensor lr rounds lr * wd in fp32 rather than in Python's double
    torch.testing.assert_close(emb.weights, expected, **(dict(rtol=1e-6, atol=1e-7) if lr_as_tensor else
                                                         dict(rtol=0, atol=0)))


@pytest.mark.gpu
def test_sign_sgd_step_replays_in_a_cuda_graph():
    g = torch.Generator(device="cuda").manual_seed(0)
    emb = CastedSparseEmbedding(50, 16, 32, init_std=0.1, cast_to=torch.float32).cuda().train()
    lr = torch.tensor(0.1, device="cuda")
    opt = trm_fast.SignSGD(emb, lr=lr, weight_decay=0.1)
    expected = emb.weights.clone()
    emb.local_weights.grad = torch.zeros(32, 16, device="cuda")  # a static gradient: the graph reads it

    def new_batch(value):
        ids = torch.randint(0, 50, (32,), device="cuda", generator=g, dtype=torch.int32)
        emb(ids)  # writes local_ids and local_weights in place
        emb.local_weights.grad.copy_(torch.randn(32, 16, device="cuda", generator=g))
        lr.fill_(value)
        reference_sign_sgd_step(expected, emb.local_weights.grad, ids, value, 0.1)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        new_batch(0.1)
        opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for value in (0.2, 0.05, 0.3):
        new_batch(value)
        graph.replay()
    torch.testing.assert_close(emb.weights, expected, rtol=1e-6, atol=1e-6)
