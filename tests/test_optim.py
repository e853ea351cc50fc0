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
