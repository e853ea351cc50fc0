"""The engine on a GPU: compiled step and captured CUDA graphs against the drop-in model's eager loop."""

import pytest
import torch
import trm_fast
from helpers import make_batch, tiny_config

pytestmark = pytest.mark.gpu

MODELS = [(trm_fast.TRM, dict()), (trm_fast.TRM, dict(mlp_t=True, pos_encodings="none")), (trm_fast.HRM, dict())]


@pytest.mark.parametrize("cls, overrides", MODELS, ids=["trm-attn", "trm-mlpt", "hrm"])
def test_captured_loop_matches_the_drop_in_model(cls, overrides):
    torch.manual_seed(0)
    n, rows = 37, 8
    cfg = tiny_config(hidden_size=64, num_heads=4, seq_len=17, puzzle_emb_ndim=64, forward_dtype="bfloat16",
                      halt_max_steps=6, **overrides)
    with torch.device("cuda"):
        model = cls(cfg).eval()
        with torch.no_grad():
            model.inner.q_head.weight.normal_(0, 0.3)
            model.inner.q_head.bias.zero_()
    batch = {k: v.cuda() for k, v in make_batch(cfg, batch_size=n).items()}
    outs = []
    with torch.no_grad():
        carry = model.initial_carry(batch)
        for _ in range(cfg["halt_max_steps"]):
            carry, out = model(carry=carry, batch=batch)
            outs.append(out)
    engine = trm_fast.Engine(model, rows)
    assert engine.graphs and engine.dtype == torch.bfloat16
    for _ in range(2):  # a second call replays the same graphs
        sol = engine.solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True)
        torch.testing.assert_close(sol.logits.float(), outs[-1]["logits"].float(), atol=0.1, rtol=0.05)
        torch.testing.assert_close(sol.q_halt_logits, outs[-1]["q_halt_logits"], atol=0.1, rtol=0.05)
    # halting "q": the same decisions wherever the reference's margin is clear of zero
    margin = torch.stack([o["q_halt_logits"] - (o["q_continue_logits"] if model.learns_q_continue else 0)
                          for o in outs])  # (M, n)
    q = engine.solve(batch["inputs"], batch["puzzle_identifiers"], halting="q")
    says = margin > 0
    first = torch.where(says.any(0), says.int().argmax(0) + 1, cfg["halt_max_steps"])
    clear = (margin.abs() > 0.1).all(0)
    assert clear.sum() > n // 2
    assert torch.equal(q.steps[clear].long(), first[clear])
    assert len(set(q.steps.tolist())) > 1  # puzzles stopped at different steps
