"""trm_fast.Engine against the drop-in model's own ACT loop (fp32 on the CPU: bit-identical)."""

import pytest
import torch
import trm_fast
from helpers import halting_margins, make_batch, official_loop, spread_halting, tiny_config
from trm_fast.engine import engine as engine_module

MODELS = [
    (trm_fast.TRM, dict(pos_encodings="rope")),
    (trm_fast.TRM, dict(pos_encodings="learned", mlp_t=True)),
    (trm_fast.TRM, dict(no_ACT_continue=False)),
    (trm_fast.HRM, dict(pos_encodings="rope")),
]
IDS = ["trm-attn", "trm-mlpt", "trm-qcontinue", "hrm"]


def halting_model(cls, overrides, n, seed=0):
    """A model whose Q head makes puzzles halt at different steps: some at step 1, some never."""
    torch.manual_seed(seed)
    cfg = tiny_config(halt_max_steps=5, backend="reference", **overrides)
    model = cls(cfg).eval()
    batch = make_batch(cfg, seed=seed, batch_size=n)
    spread_halting(model, batch)
    return cfg, model, batch


@pytest.mark.parametrize("cls, overrides", MODELS, ids=IDS)
@pytest.mark.parametrize("n, rows", [(7, 3), (2, 5), (1, 4), (6, 6)])
def test_halting_all_is_the_official_evaluation(cls, overrides, n, rows):
    torch.manual_seed(n)
    cfg = tiny_config(backend="reference", **overrides)
    model = cls(cfg).eval()
    batch = make_batch(cfg, seed=n, batch_size=n)
    last = official_loop(model, batch)[-1]
    sol = trm_fast.Engine(model, rows).solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True,
                                             labels=batch["labels"])
    assert torch.equal(sol.logits, last["logits"]) and torch.equal(sol.q_halt_logits, last["q_halt_logits"])
    assert torch.equal(sol.preds, last["logits"].argmax(-1).int())
    assert sol.steps.tolist() == [cfg["halt_max_steps"]] * n
    right = (sol.preds == batch["labels"]).sum(-1)
    assert torch.equal(sol.correct_tokens[:, -1], right)


@pytest.mark.parametrize("cls, overrides", MODELS, ids=IDS)
def test_halting_q_stops_each_puzzle_at_its_first_halt_and_refills_its_row(cls, overrides):
    n, rows = 13, 4
    cfg, model, batch = halting_model(cls, overrides, n)
    outs = official_loop(model, batch)
    says = halting_margins(model, outs) > 0  # (M, n)
    m = cfg["halt_max_steps"]
    first = torch.where(says.any(0), says.int().argmax(0) + 1, 0)  # first halting step, 0 for never
    expected_steps = torch.where(first > 0, first, m)
    assert (expected_steps == 1).any() and (first == 0).any() and ((expected_steps > 1) & (first > 0)).any()

    sol = trm_fast.Engine(model, rows).solve(batch["inputs"], batch["puzzle_identifiers"], halting="q",
                                             return_logits=True, labels=batch["labels"])
    assert sol.steps.tolist() == expected_steps.tolist()
    assert sol.halt_step.tolist() == first.tolist() and torch.equal(sol.halted_by_model, first > 0)
    for i in range(n):  # each puzzle, in input order, answered what the model says at its last step
        out = outs[expected_steps[i] - 1]
        assert torch.equal(sol.logits[i], out["logits"][i]), i
        assert torch.equal(sol.q_halt_logits[i], out["q_halt_logits"][i]), i
        for s in range(m):  # right tokens after each step it ran
            right = (outs[s]["logits"][i].argmax(-1) == batch["labels"][i]).sum() if s < expected_steps[i] else -1
            assert sol.correct_tokens[i, s] == right, (i, s)

    everything = trm_fast.Engine(model, rows).solve(batch["inputs"], batch["puzzle_identifiers"], halting="all")
    assert everything.halt_step.tolist() == first.tolist() and everything.steps.tolist() == [m] * n


@pytest.mark.parametrize("cls, overrides", MODELS, ids=IDS)
def test_a_halt_threshold_moves_each_puzzles_decision(cls, overrides):
    n = 13
    cfg, model, batch = halting_model(cls, overrides, n)
    margin = halting_margins(model, official_loop(model, batch))  # (M, n)
    threshold = float(margin.median())
    says = margin > threshold
    first = torch.where(says.any(0), says.int().argmax(0) + 1, 0)
    assert len(set(first.tolist())) > 2
    engine = trm_fast.Engine(model, 4)
    sol = engine.solve(batch["inputs"], batch["puzzle_identifiers"], halting="q", halt_threshold=threshold)
    assert sol.halt_step.tolist() == first.tolist()
    assert sol.steps.tolist() == torch.where(first > 0, first, cfg["halt_max_steps"]).tolist()
    never = engine.solve(batch["inputs"], batch["puzzle_identifiers"], halting="q", halt_threshold=1e30)
    assert never.steps.tolist() == [cfg["halt_max_steps"]] * n and not never.halted_by_model.any()


@pytest.mark.parametrize("cls, overrides", [MODELS[0], MODELS[3]], ids=[IDS[0], IDS[3]])
def test_the_last_puzzles_finish_on_fewer_rows_with_the_same_answers(cls, overrides, monkeypatch):
    n, rows = 30, 8
    cfg, model, batch = halting_model(cls, overrides, n)
    args = (batch["inputs"], batch["puzzle_identifiers"], "q")
    wide = trm_fast.Engine(model, rows, narrow_tail=False).solve(*args, return_logits=True, labels=batch["labels"])
    moves, move = [], engine_module.Rows.move_working_to

    def spy(self, narrow):
        moves.append((self.halted.shape[0], narrow.halted.shape[0], int((~self.halted).sum())))
        move(self, narrow)
    monkeypatch.setattr(engine_module.Rows, "move_working_to", spy)
    monkeypatch.setattr(engine_module, "TAIL_DIVISOR", 4)
    engine = trm_fast.Engine(model, rows)  # narrow_tail by default
    for _ in range(2):  # the second call starts again on all the rows
        tail = engine.solve(*args, return_logits=True, labels=batch["labels"])
        for name in ("preds", "steps", "halt_step", "correct_tokens"):
            assert torch.equal(getattr(tail, name), getattr(wide, name)), name
        for name in ("logits", "q_halt_logits"):  # a CPU GEMM may round the last bit by the rows' count
            torch.testing.assert_close(getattr(tail, name), getattr(wide, name), atol=1e-5, rtol=1e-5)
    assert len(moves) == 2 and all(r == rows and w == rows // 4 and 0 < k <= w for r, w, k in moves)
    assert trm_fast.Engine(model, rows).solve(*args[:2], "all").steps.tolist() == [cfg["halt_max_steps"]] * n
    assert len(moves) == 2  # halting="all" moves in lockstep: nothing to narrow


def test_queue_segments_and_repeated_calls_give_the_same_answers(monkeypatch):
    n = 11
    cfg, model, batch = halting_model(trm_fast.TRM, {}, n, seed=3)
    engine = trm_fast.Engine(model, 3)
    whole = {h: engine.solve(batch["inputs"], batch["puzzle_identifiers"], h) for h in ("q", "all")}
    monkeypatch.setattr(engine_module, "QUEUE_BYTES", 1)  # a queue of one batch: five segments
    small = trm_fast.Engine(model, 3)
    for halting, sol in whole.items():
        again = small.solve(batch["inputs"], batch["puzzle_identifiers"], halting)
        assert small._queue.capacity == 3
        assert torch.equal(again.preds, sol.preds) and torch.equal(again.steps, sol.steps)
        assert torch.equal(again.q_halt_logits, sol.q_halt_logits)
    part = engine.solve(batch["inputs"][5:7], batch["puzzle_identifiers"][5:7], "q")  # fewer than before
    assert torch.equal(part.preds, whole["q"].preds[5:7]) and torch.equal(part.steps, whole["q"].steps[5:7])
    empty = engine.solve(batch["inputs"][:0], batch["puzzle_identifiers"][:0])
    assert empty.preds.shape == (0, cfg["seq_len"]) and empty.steps.shape == (0,)


def test_engine_rereads_weights_that_changed_in_place():
    cfg, model, batch = halting_model(trm_fast.TRM, {}, 4)
    engine = trm_fast.Engine(model, 4)
    before = engine.solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True)
    with torch.no_grad():
        model.inner.lm_head.weight.mul_(2)  # as an optimizer step would: in place
    after = engine.solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True)
    assert torch.equal(after.logits, official_loop(model, batch)[-1]["logits"])
    assert not torch.equal(after.logits, before.logits)
    model.load_state_dict(trm_fast.TRM(cfg).state_dict())
    engine.refresh()
    assert torch.equal(engine.solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True).logits,
                       official_loop(model, batch)[-1]["logits"])


def test_bfloat16_model_runs_in_float32_on_the_cpu_and_never_more_rows_than_puzzles():
    cfg = tiny_config(forward_dtype="bfloat16")
    model = trm_fast.TRM(cfg).eval()
    with pytest.warns(UserWarning, match="computes in float32 on the CPU"):
        engine = trm_fast.Engine(model, 64)
    batch = make_batch(cfg, batch_size=2)
    sol = engine.solve(batch["inputs"], batch["puzzle_identifiers"], return_logits=True)
    assert sol.logits.dtype == torch.float32 and list(engine._rows) == [2]
    assert engine.core.lm_head.weight.dtype == torch.float32
    assert model.inner.lm_head.weight.dtype == torch.float32 and model.config.forward_dtype == "bfloat16"


def test_bad_input_is_named():
    cfg = tiny_config()
    model = trm_fast.TRM(cfg).eval()
    batch = make_batch(cfg, batch_size=3)
    ins, ids = batch["inputs"], batch["puzzle_identifiers"]
    with pytest.raises(TypeError, match="trm_fast.TRM or trm_fast.HRM, got Linear"):
        trm_fast.Engine(torch.nn.Linear(2, 2), 4)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            trm_fast.Engine(model, bad)
    with pytest.raises(ValueError, match="must be one of 'auto', 'reference', 'fused', got 'fast'"):
        trm_fast.Engine(model, 2, ops="fast")
    engine = trm_fast.Engine(model, 2)
    cases = [
        (dict(halting="maybe"), ValueError, "halting must be one of 'all', 'q', got 'maybe'"),
        (dict(halt_threshold=float("nan")), ValueError, "halt_threshold must be a finite number, got nan"),
        (dict(halt_threshold="1"), ValueError, "halt_threshold must be a finite number, got '1'"),
        (dict(inputs=ins[:, :-1]), ValueError, r"inputs must have shape \(N, seq_len=7\), got \(3, 6\)"),
        (dict(inputs=ins[0]), ValueError, r"inputs must have shape \(N, seq_len=7\), got \(7,\)"),
        (dict(puzzle_identifiers=ids[:2]), ValueError, r"puzzle_identifiers must have shape \(3,\)"),
        (dict(labels=batch["labels"][:, :3]), ValueError, r"labels must have the shape of inputs \(3, 7\)"),
        (dict(inputs=ins.float()), TypeError, "inputs must hold integer ids, got torch.float32"),
        (dict(puzzle_identifiers=[0, 1, 2]), TypeError, "puzzle_identifiers must be a tensor, got list"),
        (dict(inputs=ins + cfg["vocab_size"]), ValueError, r"inputs holds token ids in \[\d+, \d+\], outside the "
                                                          r"vocabulary \[0, 11\)"),
        (dict(puzzle_identifiers=ids - 1 - ids.max()), ValueError, "puzzle_identifiers holds ids in .* outside "
                                                                   r"\[0, num_puzzle_identifiers=4\)"),
    ]
    for change, error, message in cases:
        args = dict(inputs=ins, puzzle_identifiers=ids, halting="all", labels=None) | change
        with pytest.raises(error, match=message):
            engine.solve(args.pop("inputs"), args.pop("puzzle_identifiers"), **args)
    model.inner.puzzle_emb.weights = torch.zeros(9, cfg["puzzle_emb_ndim"])  # the model changed shape
    with pytest.raises(ValueError, match=r"inner.puzzle_emb.weights is \(9, 16\), but the engine was built for "
                                         r"\(4, 16\).*build a new trm_fast.Engine"):
        engine.solve(ins, ids)
