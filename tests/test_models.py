"""TRM and HRM against what the paper and the contract say, with tensors built here."""

import math

import pytest
import torch
import trm_fast
from helpers import make_batch, tiny_config

VARIANTS = [
    (trm_fast.TRM, dict(pos_encodings="rope")),
    (trm_fast.TRM, dict(pos_encodings="learned")),
    (trm_fast.TRM, dict(pos_encodings="none")),
    (trm_fast.TRM, dict(pos_encodings="none", mlp_t=True)),
    (trm_fast.TRM, dict(puzzle_emb_ndim=0)),
    (trm_fast.TRM, dict(puzzle_emb_ndim=20, puzzle_emb_len=3)),
    (trm_fast.TRM, dict(no_ACT_continue=False)),
    (trm_fast.HRM, dict(pos_encodings="rope")),
    (trm_fast.HRM, dict(pos_encodings="learned", mlp_t=True)),
    (trm_fast.HRM, dict(puzzle_emb_ndim=0)),
]
IDS = [f"{cls.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items()) for cls, kw in VARIANTS]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cls, overrides", VARIANTS, ids=IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_shapes_dtypes_and_gradients(cls, overrides, dtype, training):
    cfg = tiny_config(forward_dtype=dtype, **overrides)
    model = cls(cfg).train(training)
    batch = make_batch(cfg)
    carry = model.initial_carry(batch)
    p = model.inner.puzzle_emb_len
    assert p == (math.ceil(cfg["puzzle_emb_ndim"] / 16) if cls is trm_fast.HRM or cfg["puzzle_emb_len"] == 0
                 else cfg["puzzle_emb_len"])
    for _ in range(2):
        carry, out = model(carry=carry, batch=batch)
    b, s, v, d = cfg["batch_size"], cfg["seq_len"], cfg["vocab_size"], cfg["hidden_size"]
    assert out["logits"].shape == (b, s, v) and out["logits"].dtype == getattr(torch, dtype)
    assert out["q_halt_logits"].shape == (b,) and out["q_halt_logits"].dtype == torch.float32
    assert out["q_continue_logits"].dtype == torch.float32
    assert carry.inner_carry.z_H.shape == (b, s + p, d) == carry.inner_carry.z_L.shape
    assert not carry.inner_carry.z_H.requires_grad and not carry.inner_carry.z_L.requires_grad
    assert carry.steps.dtype == torch.int32 and carry.halted.dtype == torch.bool
    assert torch.isfinite(out["logits"].float()).all()
    learns_continue = cls is trm_fast.HRM or not cfg.get("no_ACT_continue", True)
    assert ("target_q_continue" in out) == (training and learns_continue)
    if training:
        head = trm_fast.ACTLossHead(model, "stablemax_cross_entropy")
        _, loss, *_ = head(return_keys=[], carry=carry, batch=batch)
        loss.backward()
        grads = [p_.grad for p_ in model.parameters() if p_.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        if cfg["puzzle_emb_ndim"]:
            assert model.puzzle_emb.local_weights.grad is not None


@pytest.mark.parametrize("cls", [trm_fast.TRM, trm_fast.HRM])
def test_the_usual_module_conversions_work(cls):
    # nn.Module.to/float/double walk the submodules through their _apply: no module may shadow it
    model = cls(tiny_config(recompute=True))
    assert model.double().inner.lm_head.weight.dtype == torch.float64
    assert model.float().to("cpu").inner.lm_head.weight.dtype == torch.float32


def test_state_dict_keys_match_the_contract():
    trm = trm_fast.TRM(tiny_config(pos_encodings="learned", L_layers=1))
    assert sorted(trm.state_dict()) == sorted([
        "inner.embed_tokens.embedding_weight", "inner.lm_head.weight", "inner.q_head.weight", "inner.q_head.bias",
        "inner.puzzle_emb.weights", "inner.embed_pos.embedding_weight", "inner.H_init", "inner.L_init",
        "inner.L_level.layers.0.self_attn.qkv_proj.weight", "inner.L_level.layers.0.self_attn.o_proj.weight",
        "inner.L_level.layers.0.mlp.gate_up_proj.weight", "inner.L_level.layers.0.mlp.down_proj.weight"])
    mlpt = trm_fast.TRM(tiny_config(pos_encodings="rope", mlp_t=True, L_layers=1)).state_dict()
    assert "inner.L_level.layers.0.mlp_t.gate_up_proj.weight" in mlpt and "inner.L_level.layers.0.mlp_t.down_proj.weight" in mlpt
    assert not any("rotary" in k or "cos" in k or "local_" in k for k in mlpt)  # not persistent
    hrm = trm_fast.HRM(tiny_config(H_layers=2, L_layers=1)).state_dict()
    assert "inner.H_level.layers.1.mlp.down_proj.weight" in hrm and "inner.L_level.layers.0.mlp.down_proj.weight" in hrm
    # dtypes: fp32 weights, latents in the forward dtype
    bf = trm_fast.TRM(tiny_config(forward_dtype="bfloat16")).state_dict()
    assert bf["inner.H_init"].dtype == torch.bfloat16 and bf["inner.lm_head.weight"].dtype == torch.float32
    # shapes the official SwiGLU gives: inner width round(2/3 * expansion * width) up to a multiple of 256
    big = trm_fast.TRM(tiny_config(hidden_size=512, num_heads=8, expansion=4, seq_len=81, puzzle_emb_ndim=512,
                                   puzzle_emb_len=16, mlp_t=True, pos_encodings="none", L_layers=1)).state_dict()
    assert big["inner.L_level.layers.0.mlp.gate_up_proj.weight"].shape == (2 * 1536, 512)
    assert big["inner.L_level.layers.0.mlp_t.gate_up_proj.weight"].shape == (2 * 512, 97)


def test_initialisation():
    torch.manual_seed(0)
    model = trm_fast.TRM(tiny_config(hidden_size=256, num_heads=4, puzzle_emb_ndim=256))
    inner = model.inner
    assert torch.all(inner.q_head.weight == 0) and torch.all(inner.q_head.bias == -5)
    assert torch.all(inner.puzzle_emb.weights == 0)
    w = inner.L_level.layers[0].mlp.gate_up_proj.weight  # LeCun: std 1/sqrt(fan_in) after truncation
    assert abs(w.std().item() * math.sqrt(256) - 1) < 0.03 and w.abs().max() <= 2.28 / math.sqrt(256)  # cut at 2 std of the untruncated normal
    e = inner.embed_tokens.embedding_weight
    assert abs(e.std().item() * math.sqrt(256) - 1) < 0.15
    assert abs(inner.H_init.float().std().item() - 1) < 0.2 and inner.H_init.abs().max() <= 2.28


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = trm_fast.TRM(tiny_config())
    torch.manual_seed(3)
    b = trm_fast.TRM(tiny_config())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


class _Linear(torch.nn.Module):
    """Stand-in for f: h <- a * h + injection, and a log of the calls."""

    def __init__(self, name, log, a):
        super().__init__()
        self.name, self.log, self.a = name, log, a

    def forward(self, h, injection, cos_sin=None):
        self.log.append((self.name, torch.is_grad_enabled()))
        return self.a * h + injection


def test_trm_recursion_follows_the_paper():
    cfg = tiny_config(H_cycles=3, L_cycles=4, forward_dtype="float64")
    model = trm_fast.TRM(cfg).train()
    log = []
    model.inner.L_level = _Linear("f", log, 0.5)
    batch = make_batch(cfg)
    carry = model.initial_carry(batch)
    carry, out = model(carry=carry, batch=batch)
    # the paper's pseudocode, by hand: n = L_cycles latent updates, then one answer update, T = H_cycles times
    x = model.inner.input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    y = model.inner.H_init.expand_as(x)
    z = model.inner.L_init.expand_as(x)
    for _ in range(3):
        for _ in range(4):
            z = 0.5 * z + (x + y)
        y = 0.5 * y + z
    torch.testing.assert_close(carry.inner_carry.z_H, y)
    torch.testing.assert_close(carry.inner_carry.z_L, z)
    # gradients only through the last cycle: its 4 + 1 calls
    assert [g for _, g in log] == [False] * 10 + [True] * 5


def test_hrm_one_step_gradient():
    cfg = tiny_config(H_cycles=3, L_cycles=2)
    model = trm_fast.HRM(cfg).train()
    log = []
    model.inner.L_level = _Linear("L", log, 0.5)
    model.inner.H_level = _Linear("H", log, 0.25)
    batch = make_batch(cfg)
    model(carry=model.initial_carry(batch), batch=batch)
    one_pass = [("L", False), ("L", False), ("H", False), ("L", False), ("L", False), ("H", False),
                ("L", False), ("L", True), ("H", True)]
    # training also runs one more pass, without gradients, for the Q-continue target
    assert log == one_pass + [(name, False) for name, _ in one_pass]


def test_eval_always_runs_halt_max_steps():
    cfg = tiny_config(halt_max_steps=5)
    model = trm_fast.TRM(cfg).eval()
    with torch.no_grad():
        model.inner.q_head.bias.fill_(100.0)  # the Q head says "halt" everywhere; eval ignores it
    batch = make_batch(cfg)
    carry = model.initial_carry(batch)
    for step in range(1, 6):
        carry, _ = model(carry=carry, batch=batch)
        assert torch.all(carry.steps == step)
        assert torch.all(carry.halted == (step == 5))


@pytest.mark.parametrize("cls", [trm_fast.TRM, trm_fast.HRM])
def test_training_halts_on_the_q_head(cls):
    cfg = tiny_config(halt_max_steps=6, halt_exploration_prob=0.0, no_ACT_continue=True)
    model = cls(cfg).train()
    batch = make_batch(cfg)
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([50.0, -50.0]))  # halt logit >> 0 and >> continue
    carry, _ = model(carry=model.initial_carry(batch), batch=batch)
    assert carry.halted.all() and torch.all(carry.steps == 1)
    with torch.no_grad():
        model.inner.q_head.bias.copy_(torch.tensor([-50.0, 50.0]))
    carry = model.initial_carry(batch)
    for step in range(1, 7):
        carry, _ = model(carry=carry, batch=batch)
        assert torch.all(carry.halted == (step == 6))


def test_exploration_sets_a_minimum_number_of_steps():
    cfg = tiny_config(batch_size=64, halt_max_steps=8, halt_exploration_prob=1.0)
    model = trm_fast.TRM(cfg).train()
    with torch.no_grad():
        model.inner.q_head.bias.fill_(50.0)  # would halt at once
    batch = make_batch(cfg)
    carry = model.initial_carry(batch)
    torch.manual_seed(0)
    halted_at = torch.zeros(64, dtype=torch.int32)
    for step in range(1, 9):
        carry, _ = model(carry=carry, batch=batch)
        halted_at = torch.where((halted_at == 0) & carry.halted, step, halted_at)
    # every row explored: min steps drawn from [2, 8], so none halted at step 1, and several lengths occur
    assert halted_at.min() >= 2 and halted_at.max() <= 8 and len(halted_at.unique()) > 3


def test_halted_rows_reset_and_take_the_new_batch():
    cfg = tiny_config(halt_max_steps=3)
    model = trm_fast.TRM(cfg).eval()
    first, second = make_batch(cfg, seed=1), make_batch(cfg, seed=2)
    carry = model.initial_carry(first)
    carry, _ = model(carry=carry, batch=first)
    carry.halted = torch.tensor([True, False, True])
    carry, out = model(carry=carry, batch=second)
    for key in first:
        torch.testing.assert_close(carry.current_data[key][[0, 2]], second[key][[0, 2]])
        torch.testing.assert_close(carry.current_data[key][1], first[key][1])
    assert carry.steps.tolist() == [1, 2, 1]
    # a reset row computes exactly what a fresh carry computes on the same puzzle
    _, fresh = model(carry=model.initial_carry(second), batch=second)
    torch.testing.assert_close(out["logits"][[0, 2]], fresh["logits"][[0, 2]])


def test_trm_learns_q_continue_when_asked():
    cfg = tiny_config(no_ACT_continue=False, halt_max_steps=4)
    model = trm_fast.TRM(cfg).train()
    with torch.no_grad():
        model.inner.q_head.weight.normal_()
    batch = make_batch(cfg)
    carry, _ = model(carry=model.initial_carry(batch), batch=batch)
    carry.halted[:] = False
    data = carry.current_data
    torch.manual_seed(0)
    new_carry, out = model(carry=carry, batch=batch)
    # the target is the next step's max(Q-halt, Q-continue), computed from the new carry
    _, _, (nh, nc) = model.inner(new_carry.inner_carry, data)
    last = new_carry.steps >= 4
    torch.testing.assert_close(out["target_q_continue"], torch.sigmoid(torch.where(last, nh, torch.maximum(nh, nc))))
    head = trm_fast.ACTLossHead(model, "softmax_cross_entropy")
    _, _, metrics, _, _ = head(return_keys=[], carry=new_carry, batch=batch)
    assert "q_continue_loss" in metrics


def test_forward_by_keyword_and_all_halted_flag():
    cfg = tiny_config(halt_max_steps=2)
    head = trm_fast.ACTLossHead(trm_fast.TRM(cfg).eval(), "stablemax_cross_entropy")
    batch = make_batch(cfg)
    carry = head.initial_carry(batch)
    carry, loss, metrics, outputs, all_halted = head(return_keys=["logits", "preds"], carry=carry, batch=batch)
    assert not all_halted and set(outputs) == {"logits", "preds"}
    carry, *_, all_halted = head(return_keys=[], carry=carry, batch=batch)
    assert all_halted


def test_a_carry_clones_into_new_memory_and_copies_in_place():
    cfg = tiny_config()
    model = trm_fast.TRM(cfg)
    carry = model.initial_carry(make_batch(cfg))
    twin = carry.clone()
    assert twin.inner_carry.z_H.data_ptr() != carry.inner_carry.z_H.data_ptr()
    # the initial latents are uninitialised memory, NaNs included: compare their bits
    assert torch.equal(twin.inner_carry.z_L.view(torch.int32), carry.inner_carry.z_L.view(torch.int32))
    assert torch.equal(twin.halted, carry.halted)
    other = model.initial_carry(make_batch(cfg, seed=1))
    other.inner_carry.z_H.fill_(3.0)
    other.steps.fill_(2)
    pointer = twin.inner_carry.z_H.data_ptr()
    assert twin.copy_(other) is twin and twin.inner_carry.z_H.data_ptr() == pointer
    assert torch.equal(twin.inner_carry.z_H, other.inner_carry.z_H) and torch.equal(twin.steps, other.steps)
    assert torch.equal(twin.current_data["inputs"], other.current_data["inputs"])
