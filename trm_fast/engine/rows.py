"""The engine's static state and the bookkeeping around one ACT step, all on the device.

`Rows` is what each of the R batch rows holds (latents, the puzzle it works on, its step counter);
`Queue` holds up to C waiting puzzles and, one row per puzzle, what the engine answers for it. A spare
result row C takes the writes of rows that answer nothing this step, so every write has a fixed shape
and nothing asks the host which rows halted.

One ACT step is `refill`, then the model's step (engine/step.py), then `settle`:

    refill   halted rows take the next waiting puzzles, in queue order (a cumulative sum ranks them);
             a halted row finds none once the queue is used up and idles without a puzzle
    step     halted rows restart from the initial latents; the core runs once on every row
    settle   count each row's correct tokens at this step; a row halts at halt_max_steps, or where the
             policy is 'q' and the model says so (its halt margin above the queue's threshold), or when
             it has no puzzle; rows that halt with a puzzle write their answer to its result row
"""

from dataclasses import dataclass, fields
from typing import Optional

import torch

from ..data.format import IGNORE_LABEL_ID


@dataclass
class Rows:
    z_H: torch.Tensor  # (R, P + S, D) the answer latent, updated in place
    z_L: torch.Tensor  # (R, P + S, D) the reasoning latent, updated in place
    inputs: torch.Tensor  # (R, S) int32
    puzzle_identifiers: torch.Tensor  # (R,) int32
    labels: torch.Tensor  # (R, S) int32, IGNORE_LABEL_ID where there is nothing to check
    steps: torch.Tensor  # (R,) int32: ACT steps taken on the row's puzzle
    halted: torch.Tensor  # (R,) bool: the row takes a new puzzle at the next step
    puzzle: torch.Tensor  # (R,) int64: queue position of the row's puzzle, -1 for none
    first_halt: torch.Tensor  # (R,) int32: first step at which the model said halt, 0 before

    @classmethod
    def allocate(cls, rows: int, positions: int, seq_len: int, hidden: int, dtype, device) -> "Rows":
        def ints(*shape, dtype=torch.int32):
            return torch.zeros(shape, dtype=dtype, device=device)
        latent = (rows, positions, hidden)
        return cls(torch.zeros(latent, dtype=dtype, device=device), torch.zeros(latent, dtype=dtype, device=device),
                   ints(rows, seq_len), ints(rows), ints(rows, seq_len), ints(rows),
                   torch.ones(rows, dtype=torch.bool, device=device), ints(rows, dtype=torch.int64), ints(rows))

    def clear(self):
        """Every row halted and without a puzzle: the next step takes puzzles from the queue."""
        self.halted.fill_(True)
        self.puzzle.fill_(-1)

    def move_working_to(self, narrow: "Rows"):
        """Give `narrow` (fewer rows) the rows still working on a puzzle, first, then halted ones to fill
        it; the caller knows they fit. Halted rows have written their answers already, and with no puzzle
        waiting they take none, so `narrow` carries on where these rows stood."""
        order = torch.argsort(self.halted.int(), stable=True)[:narrow.halted.shape[0]]
        for f in fields(self):
            getattr(narrow, f.name).copy_(getattr(self, f.name)[order])


@dataclass
class Queue:
    inputs: torch.Tensor  # (C, S) int32, the waiting puzzles in order
    puzzle_identifiers: torch.Tensor  # (C,) int32
    labels: torch.Tensor  # (C, S) int32
    size: torch.Tensor  # () int64: puzzles loaded
    next: torch.Tensor  # () int64: position of the next puzzle to hand out
    halt_q: torch.Tensor  # () bool: the policy, 'q' (True) or 'all'
    halt_threshold: torch.Tensor  # () float32: the model says halt where its halt margin exceeds it
    # results, C + 1 rows (the last one is the spare)
    preds: torch.Tensor  # (C + 1, S) int32: argmax of the logits at the puzzle's last step
    logits: torch.Tensor  # (C + 1, S, V) at that step
    q_halt_logits: torch.Tensor  # (C + 1,) float32 at that step
    steps: torch.Tensor  # (C + 1,) int32: ACT steps taken
    first_halt: torch.Tensor  # (C + 1,) int32: first step at which the model said halt, 0 for never
    correct: torch.Tensor  # (C + 1, M) int32: labelled tokens predicted right after each step, -1 if not run

    @classmethod
    def allocate(cls, capacity: int, seq_len: int, vocab: int, max_steps: int, logits_dtype, device) -> "Queue":
        def new(*shape, dtype=torch.int32):
            return torch.zeros(shape, dtype=dtype, device=device)
        c1 = capacity + 1
        return cls(new(capacity, seq_len), new(capacity), new(capacity, seq_len), new(dtype=torch.int64),
                   new(dtype=torch.int64), new(dtype=torch.bool), new(dtype=torch.float32), new(c1, seq_len),
                   new(c1, seq_len, vocab, dtype=logits_dtype), new(c1, dtype=torch.float32), new(c1), new(c1),
                   new(c1, max_steps))

    @staticmethod
    def bytes_per_puzzle(seq_len: int, vocab: int, max_steps: int, logits_dtype) -> int:
        """Device bytes `allocate` takes per puzzle of capacity: inputs, labels, preds (int32), logits,
        the Q-halt logit, steps, first halt, the ids, and the per-step counts."""
        return 3 * 4 * seq_len + seq_len * vocab * logits_dtype.itemsize + 4 * 4 + 4 * max_steps

    @property
    def capacity(self) -> int:
        return self.inputs.shape[0]

    def load(self, inputs, puzzle_identifiers, labels: Optional[torch.Tensor], halt_q: bool,
             halt_threshold: float = 0.0):
        """Queue these puzzles (n <= capacity; any integer dtype, any device) and rewind."""
        n = inputs.shape[0]
        self.inputs[:n].copy_(inputs, non_blocking=True)
        self.puzzle_identifiers[:n].copy_(puzzle_identifiers, non_blocking=True)
        if labels is None:
            self.labels[:n].fill_(IGNORE_LABEL_ID)
        else:
            self.labels[:n].copy_(labels, non_blocking=True)
        self.correct[:n].fill_(-1)
        self.size.fill_(n)
        self.next.zero_()
        self.halt_q.fill_(halt_q)
        self.halt_threshold.fill_(halt_threshold)


class Bookkeeping:
    """`refill` and `settle` on the engine's rows and queue, eager or compiled. Eager they are ~60 kernels of one
    op each per ACT step, 1.1 ms of a 16-step evaluation's 18 ms of kernels at batch 1 (H200, `trm-fast profile`,
    bench/NOTES.md), each also a gap in the replayed graph; compiled, torch.compile fuses them into a few. They
    compile apart from the model's step: a queue that grows (its capacity is a shape here) recompiles these
    small functions, not the model."""

    def __init__(self, compiled: bool):
        self._refill = torch.compile(_refill) if compiled else _refill
        self._settle = torch.compile(_settle) if compiled else _settle

    def refill(self, rows: Rows, queue: Queue):
        """Halted rows take the next puzzles in queue order; those that find none are left without one."""
        self._refill(rows.halted, rows.puzzle, rows.first_halt, rows.inputs, rows.puzzle_identifiers, rows.labels,
                     queue.next, queue.size, queue.inputs, queue.puzzle_identifiers, queue.labels)

    def settle(self, rows: Rows, queue: Queue, logits: torch.Tensor, q_halt: torch.Tensor, margin: torch.Tensor,
               max_steps: int):
        """After the model's step: record, decide which rows halt, write the answers of those that do."""
        self._settle(rows.halted, rows.puzzle, rows.first_halt, rows.labels, rows.steps, queue.halt_q,
                     queue.halt_threshold, queue.correct, queue.preds, queue.logits, queue.q_halt_logits, queue.steps,
                     queue.first_halt, logits, q_halt, margin, max_steps)


def _refill(halted, puzzle, first_halt, r_inputs, r_ids, r_labels, next_, size, q_inputs, q_ids, q_labels):
    capacity = q_inputs.shape[0]
    position = next_ + torch.cumsum(halted, 0) - 1  # (R,) the queue position each halted row would take
    fresh = halted & (position < size)
    puzzle.copy_(torch.where(halted, torch.where(fresh, position, -1), puzzle))
    next_.copy_(torch.minimum(next_ + halted.sum(), size))
    at = position.clamp(0, capacity - 1)
    for mine, waiting in ((r_inputs, q_inputs), (r_ids, q_ids), (r_labels, q_labels)):
        mine.copy_(torch.where(fresh.view(-1, *[1] * (mine.ndim - 1)), waiting[at], mine))
    first_halt.masked_fill_(halted, 0)


def _settle(halted, puzzle, first_halt, labels, steps, halt_q, halt_threshold, q_correct, q_preds, q_logits,
            q_q_halt_logits, q_steps, q_first_halt, logits, q_halt, margin, max_steps: int):
    spare = q_preds.shape[0] - 1  # the spare result row
    says_halt = margin > halt_threshold
    has_puzzle = puzzle >= 0
    preds = logits.argmax(-1).to(torch.int32)
    labelled = labels != IGNORE_LABEL_ID
    correct = (labelled & (preds == labels)).sum(-1, dtype=torch.int32)
    at = torch.where(has_puzzle, puzzle, spare)
    q_correct.index_put_((at, (steps - 1).long()), correct)

    first_halt.copy_(torch.where((first_halt == 0) & says_halt, steps, first_halt))
    halted.copy_((steps >= max_steps) | (halt_q & says_halt) | ~has_puzzle)
    done = torch.where(halted & has_puzzle, puzzle, spare)
    for result, value in ((q_preds, preds), (q_logits, logits), (q_q_halt_logits, q_halt), (q_steps, steps),
                          (q_first_halt, first_halt)):
        result.index_copy_(0, done, value.to(result.dtype))
