"""The engine's bookkeeping (engine/rows.py) compiled by torch.compile writes what it writes eagerly."""

import dataclasses

import pytest
import torch
from trm_fast.engine.rows import Bookkeeping, Queue, Rows

ROWS, SEQ, VOCAB, MAX_STEPS = 5, 7, 6, 3


def _state(capacity: int, puzzles: int, halt_q: bool, seed: int):
    gen = torch.Generator().manual_seed(seed)
    rows = Rows.allocate(ROWS, SEQ + 2, SEQ, 4, torch.float32, "cpu")
    queue = Queue.allocate(capacity, SEQ, VOCAB, MAX_STEPS, torch.float32, "cpu")
    queue.load(torch.randint(0, VOCAB, (puzzles, SEQ), generator=gen), torch.arange(puzzles),
               torch.randint(-1, VOCAB, (puzzles, SEQ), generator=gen), halt_q, 0.25)
    rows.clear()
    return rows, queue


def _clone(state):
    return [dataclasses.replace(x, **{f.name: getattr(x, f.name).clone() for f in dataclasses.fields(x)})
            for x in state]


def _steps(books: Bookkeeping, rows: Rows, queue: Queue, outputs):
    """refill, a made-up model step (the step counter as the model's step advances it), settle, per output."""
    for logits, q_halt, margin in outputs:
        books.refill(rows, queue)
        rows.steps.copy_(torch.where(rows.halted, 0, rows.steps) + 1)
        books.settle(rows, queue, logits, q_halt, margin, MAX_STEPS)


@pytest.mark.parametrize("halt_q", [False, True], ids=["all", "q"])
@pytest.mark.parametrize("capacity, puzzles", [(8, 8), (12, 9), (3, 2)])
def test_compiled_bookkeeping_writes_what_the_eager_one_writes(halt_q, capacity, puzzles):
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(capacity * 10 + puzzles)
    # margins around the threshold (0.25): some rows say halt at each step, others never
    outputs = [(torch.randn(ROWS, SEQ, VOCAB, generator=gen), torch.randn(ROWS, generator=gen),
                torch.rand(ROWS, generator=gen) - 0.5) for _ in range(3 * MAX_STEPS * capacity // ROWS + 2)]
    eager = _state(capacity, puzzles, halt_q, seed=puzzles)
    compiled = _clone(eager)
    _steps(Bookkeeping(compiled=False), *eager, outputs)
    _steps(Bookkeeping(compiled=True), *compiled, outputs)
    for want, got in zip(eager, compiled):
        for f in dataclasses.fields(want):
            a, b = getattr(want, f.name), getattr(got, f.name)
            if isinstance(want, Queue) and f.name in ("preds", "logits", "q_halt_logits", "steps", "first_halt",
                                                      "correct"):
                a, b = a[:-1], b[:-1]  # the spare row takes every write that answers nothing, in no set order
            assert torch.equal(a, b), f"{type(want).__name__}.{f.name}"
    rows, queue = eager
    assert queue.next.item() == puzzles and (queue.steps[:puzzles] > 0).all()  # every puzzle was taken and run


def test_the_bookkeeping_compiles_whole():
    # a graph break would leave the ops after it one kernel each, as eager runs them
    from trm_fast.engine import rows as module

    torch._dynamo.reset()
    rows, queue = _state(8, 6, True, seed=1)
    refill = torch._dynamo.explain(module._refill)(
        rows.halted, rows.puzzle, rows.first_halt, rows.inputs, rows.puzzle_identifiers, rows.labels, queue.next,
        queue.size, queue.inputs, queue.puzzle_identifiers, queue.labels)
    settle = torch._dynamo.explain(module._settle)(
        rows.halted, rows.puzzle, rows.first_halt, rows.labels, rows.steps, queue.halt_q, queue.halt_threshold,
        queue.correct, queue.preds, queue.logits, queue.q_halt_logits, queue.steps, queue.first_halt,
        torch.randn(ROWS, SEQ, VOCAB), torch.randn(ROWS), torch.randn(ROWS), MAX_STEPS)
    for explained in (refill, settle):
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
