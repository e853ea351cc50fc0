"""The engine on a GPU: the compiled step replayed from CUDA graphs against the drop-in model's eager loop.

In float32 the two compute the same function up to summation order (inductor's fused kernels sum in another
order, and four ACT steps of 12 layer applications each amplify that to ~1e-3 in the logits), so replays
are checked at 1e-2, far below what a wrong replay gives; in bfloat16 the engine's error against a float32
run may be at most a few times the drop-in model's own."""

import pytest
import torch
import trm_fast
from trm_fast.engine import engine as engine_module
from helpers import halting_margins, make_batch, official_loop, sm90_gpu, spread_halting, tiny_config

pytestmark = pytest.mark.gpu

MODELS = [(trm_fast.TRM, dict()), (trm_fast.TRM, dict(mlp_t=True, pos_encodings="none")), (trm_fast.HRM, dict())]
IDS = ["trm-attn", "trm-mlpt", "hrm"]


def build(cls, overrides, dtype, n):
    """A model on the GPU whose puzzles halt at different steps, and a batch of n puzzles."""
    torch.manual_seed(0)
    cfg = tiny_config(hidden_size=64, num_heads=4, seq_len=17, puzzle_emb_ndim=64, forward_dtype=dtype,
                      halt_max_steps=4, **overrides)
    with torch.device("cuda"):
        model = cls(cfg).eval()
    batch = {k: v.cuda() for k, v in make_batch(cfg, batch_size=n).items()}
    spread_halting(model, batch)
    return cfg, model, batch


@pytest.mark.parametrize("cls, overrides", MODELS, ids=IDS)
def test_captured_loop_replays_the_official_evaluation(cls, overrides):
    n, rows = 37, 8
    cfg, model, batch = build(cls, overrides, "float32", n)
    outs = official_loop(model, batch)
    engine = trm_fast.Engine(model, rows)
    assert engine.graphs
    for _ in range(2):  # the second call replays the same graphs
        sol = engine.solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True)
        torch.testing.assert_close(sol.logits, outs[-1]["logits"], atol=1e-2, rtol=1e-2)
        torch.testing.assert_close(sol.q_halt_logits, outs[-1]["q_halt_logits"], atol=1e-2, rtol=1e-2)
    margin = halting_margins(model, outs)  # (M, n)
    says = margin > 0
    first = torch.where(says.any(0), says.int().argmax(0) + 1, cfg["halt_max_steps"])
    clear = (margin.abs() > 0.05).all(0)  # the same decisions wherever the margin is clear of zero
    q = engine.solve(batch["inputs"], batch["puzzle_identifiers"], halting="q", return_logits=True)
    assert clear.sum() > n // 2 and len(set(q.steps.tolist())) > 1
    assert torch.equal(q.steps[clear].long(), first[clear])
    last = torch.stack([outs[s - 1]["logits"][i] for i, s in enumerate(q.steps.tolist())])
    torch.testing.assert_close(q.logits[clear], last[clear], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("cls, overrides", MODELS, ids=IDS)
def test_bfloat16_engine_is_as_accurate_as_the_bfloat16_model(cls, overrides):
    cfg, model, batch = build(cls, overrides, "bfloat16", 16)
    _, exact, _ = build(cls, overrides, "float32", 16)
    exact.load_state_dict(model.state_dict())
    truth = official_loop(exact, batch)[-1]["logits"]
    eager = official_loop(model, batch)[-1]["logits"].float()
    sol = trm_fast.Engine(model, 16).solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True)
    assert sol.logits.dtype == torch.bfloat16

    def error(x):
        return ((x.float() - truth).norm() / truth.norm()).item()
    assert error(sol.logits) <= 3 * error(eager) + 2e-2, (error(sol.logits), error(eager))


@sm90_gpu
@pytest.mark.parametrize("cls", [trm_fast.TRM, trm_fast.HRM], ids=["trm-attn", "hrm"])
def test_the_carried_norm_is_as_accurate_as_the_bfloat16_model(cls, monkeypatch):
    """The layers on the carried RMSNorm (trm_fast.ops.carried_norm, Hopper's CUTLASS kernels), where AUTO_OPS
    names it: the model's and the engine's logits no further from a float32 run than the bf16 model's own
    without it, and the chain ran."""
    from trm_fast import backend
    from trm_fast.models.layers import Block

    cfg, model, batch = build(cls, dict(), "bfloat16", 16)
    _, exact, _ = build(cls, dict(), "float32", 16)
    exact.load_state_dict(model.state_dict())
    truth = official_loop(exact, batch)[-1]["logits"]
    own = official_loop(model, batch)[-1]["logits"]
    monkeypatch.setattr(backend, "AUTO_OPS", backend.AUTO_OPS | {"carried_norm"})
    calls = []
    carried = Block.carried
    monkeypatch.setattr(Block, "carried", lambda self, *args: calls.append(1) or carried(self, *args))
    chained = official_loop(model, batch)[-1]["logits"]
    assert calls, "the model did not run its layers on the carried chain"
    sol = trm_fast.Engine(model, 16).solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True)

    def error(x):
        return ((x.float() - truth).norm() / truth.norm()).item()
    for got in (chained, sol.logits):
        assert error(got) <= 3 * error(own) + 2e-2, (error(got), error(own))


def test_inputs_on_the_cpu_and_labels_on_the_gpu_are_taken_as_they_come():
    # the evaluator hands over its batch from the host and its labels already on the device
    cfg, model, batch = build(trm_fast.TRM, dict(), "float32", 5)
    engine = trm_fast.Engine(model, 4)
    on_gpu = engine.solve(batch["inputs"], batch["puzzle_identifiers"], labels=batch["labels"])
    mixed = engine.solve(batch["inputs"].cpu(), batch["puzzle_identifiers"].cpu(), labels=batch["labels"])
    assert torch.equal(on_gpu.preds, mixed.preds) and torch.equal(on_gpu.correct_tokens, mixed.correct_tokens)


def test_a_queue_that_grows_after_capture_is_captured_again():
    cfg, model, batch = build(trm_fast.TRM, dict(), "float32", 37)
    engine = trm_fast.Engine(model, 4)
    few = engine.solve(batch["inputs"][:4], batch["puzzle_identifiers"][:4])  # captures with a 4-puzzle queue
    many = engine.solve(batch["inputs"], batch["puzzle_identifiers"])  # a larger queue: new graphs, new pool
    assert torch.equal(many.preds[:4], few.preds)


@pytest.mark.parametrize("cls, overrides", MODELS, ids=IDS)
def test_a_narrow_tail_replays_its_own_graphs_with_the_same_decisions(cls, overrides):
    cfg, model, batch = build(cls, overrides, "float32", 150)
    margin = halting_margins(model, official_loop(model, batch))  # (M, n)
    says = margin > 0
    first = torch.where(says.any(0), says.int().argmax(0) + 1, cfg["halt_max_steps"])
    clear = (margin.abs() > 0.05).all(0)  # where no rounding can flip the decision
    engine = trm_fast.Engine(model, 32)  # narrow tail by default: 2 rows, captured on the first call
    for _ in range(2):
        tail = engine.solve(batch["inputs"], batch["puzzle_identifiers"], "q")
        assert (2, engine_module.STEPS_PER_REPLAY) in engine._captured
        assert clear.sum() > 75 and torch.equal(tail.steps[clear].long(), first[clear])
