"""`trm_fast.Engine`: the whole ACT loop on the device, for any number of puzzles.

    engine = trm_fast.Engine(model, batch_size=768)
    solution = engine.solve(inputs, puzzle_identifiers, halting="q")   # (N, seq_len) tokens, (N,) ids
    solution.preds, solution.steps, solution.q_halt_logits

The engine reads the model's weights once (engine/snapshot.py), allocates its rows and its queue once
(engine/rows.py) and runs ACT steps on them in place (engine/step.py). With `halting="all"` every
puzzle runs halt_max_steps steps, as the official evaluation does; with `halting="q"` a puzzle stops at
the first step where the model says halt, and its row at once takes the next waiting puzzle
(continuous batching). On a GPU the model's step is compiled once per batch size and
STEPS_PER_REPLAY steps are captured as one CUDA graph, so the host only replays graphs and, with
`halting="q"`, reads one flag per replay; on a CPU the same steps run eagerly, in float32.
"""

import math
import warnings
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from ..models.act import ACTModel
from ..models.batch_checks import check_ranges, tensor_version
from ..ops import resolve_backend
from . import snapshot
from .rows import Bookkeeping, Queue, Rows
from .step import ModelStep

HALTING = ("all", "q")
STEPS_PER_REPLAY = 4  # ACT steps per CUDA-graph replay: how often `halting="q"` asks whether all is done
# halting="q": once no puzzle waits and at most 1/TAIL_DIVISOR of the rows still work, they move to that many
# rows, so the last puzzles (those that never halt run halt_max_steps steps) do not step the whole batch
TAIL_DIVISOR = 16
QUEUE_BYTES = 256 * 2**20  # waiting puzzles and their results held on the device at once, at most
# The ops of the compiled step on a GPU: 'auto' (trm_fast.backend.AUTO_OPS), which there leaves the
# elementwise ops to inductor, which fuses them across op boundaries, and runs the GEMM-epilogue kernels
# measured faster: a 16-step evaluation of 768 Sudokus on an H200 took 870 ms with the gate/up + SwiGLU TMA
# kernel against 920 ms with PyTorch's ops (bench/results/2026-11-29_h200_4fd08a9_engine_ops.jsonl). Earlier
# kernels lost there: 948 against 927 ms with trm_fast's standalone add_rms_norm and swiglu kernels
# (..._09fe4eb_*), 954 against 919 ms with its attention kernel (..._5a8386e_engine_ops.jsonl). On a CPU no
# fused kernel runs: the reference.
ENGINE_OPS = "auto"


@dataclass
class Solution:
    """What the engine answers, one row per puzzle in input order, on the engine's device."""
    preds: torch.Tensor  # (N, seq_len) int32: argmax of the logits at the puzzle's last step
    steps: torch.Tensor  # (N,) int32: ACT steps taken
    q_halt_logits: torch.Tensor  # (N,) float32 at the last step
    halt_step: torch.Tensor  # (N,) int32: first step at which the model said halt, 0 if it never did
    logits: Optional[torch.Tensor] = None  # (N, seq_len, vocab) at the last step, with return_logits=True
    correct_tokens: Optional[torch.Tensor] = None  # (N, halt_max_steps) int32 with labels: labelled tokens
    # predicted right after each step, -1 for steps not run

    @property
    def halted_by_model(self) -> torch.Tensor:
        """(N,) bool: the model's own rule said halt (with halting="q": that is why the puzzle stopped)."""
        return self.halt_step > 0


class Engine:
    """Runs a trm_fast.TRM or trm_fast.HRM over any number of puzzles, `batch_size` rows at a time.

    `device`: where to run (default: the model's). On a CPU the engine computes in float32 (bfloat16
    matmuls are several times slower there), elsewhere in the model's forward dtype. Uncompiled (the
    default on a CPU) it runs at most as many rows as it has puzzles; compiled, always batch_size rows.
    `compile`: torch.compile the model's step and, apart, the bookkeeping around it (engine/rows.py; default: on
    CUDA; off, every op runs eagerly, as a debugger wants). `cuda_graphs`: replay the steps from CUDA graphs
    (default: on CUDA when compiled; torch.profiler does not see the kernels of a replayed graph, so a profile
    turns it off). `ops`: the backend of the step's ops (trm_fast.backend; default ENGINE_OPS, the fastest
    measured), for experiments.
    `narrow_tail`: with halting="q", finish the last puzzles on 1/TAIL_DIVISOR of the rows (default on;
    compiled, the narrow rows cost one more compilation and capture at the first such solve, and on an
    H200 made the shipped solver 2.6x faster on 2,000 puzzles, 1.4x on 20,000)."""

    def __init__(self, model: ACTModel, batch_size: int, device=None, *, compile: Optional[bool] = None,
                 cuda_graphs: Optional[bool] = None, ops: Optional[str] = None, narrow_tail: bool = True):
        if not isinstance(model, ACTModel):
            raise TypeError(f"Engine takes a trm_fast.TRM or trm_fast.HRM, got {type(model).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.device = torch.device(device) if device is not None else model.inner.H_init.device
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device} asked for, but no CUDA device is visible")
        self.model, self.batch_size, self.config = model, batch_size, model.config
        model_dtype = getattr(torch, model.config.forward_dtype)
        self.dtype = torch.float32 if self.device.type == "cpu" else model_dtype
        if self.dtype != model_dtype:
            warnings.warn(f"trm_fast.Engine computes in float32 on the CPU (the model's forward_dtype is "
                          f"{model.config.forward_dtype}, several times slower there)", stacklevel=2)
        self.compiled = self.device.type == "cuda" if compile is None else compile
        self.graphs = self.device.type == "cuda" and (self.compiled if cuda_graphs is None else cuda_graphs)
        self.narrow_tail = narrow_tail
        if ops is None:
            ops = ENGINE_OPS if self.device.type == "cuda" else "reference"
        self.ops = resolve_backend(ops, self.device)
        self.core = snapshot.inference_core(model, self.device, self.dtype, self.ops)
        self._shapes = snapshot.shapes(model.inner)
        self._versions = self._weight_versions(model)
        self.step = ModelStep(self.core, model.learns_q_continue)
        self._step = torch.compile(self.step, dynamic=False) if self.compiled else self.step
        self._books = Bookkeeping(self.compiled)
        self._rows: Dict[int, Rows] = {}
        self._queue: Optional[Queue] = None
        self._captured: Dict[tuple, torch.cuda.CUDAGraph] = {}
        self._pool = None

    # -- weights ----------------------------------------------------------------------------------------

    @staticmethod
    def _weight_versions(model: nn.Module):
        return tuple((t.data_ptr(), tensor_version(t)) for t in model.inner.state_dict(keep_vars=True).values())

    def refresh(self):
        """Read the model's weights again. solve() does this by itself when they changed in place (an
        optimizer step, load_state_dict, copy_) since the last read."""
        snapshot.check_same_shapes(self._shapes, self.model)
        snapshot.read_weights(self.core, self.model.inner)
        self._versions = self._weight_versions(self.model)

    # -- solving ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def solve(self, inputs, puzzle_identifiers, halting: str = "all", *, labels=None,
              return_logits: bool = False, halt_threshold: float = 0.0) -> Solution:
        """Solve N puzzles: `inputs` (N, seq_len) token ids, `puzzle_identifiers` (N,); `labels` (N, seq_len)
        adds `correct_tokens`. `halting`: "all" (every puzzle runs halt_max_steps steps, the official
        evaluation) or "q" (each stops when the model says so and its row takes the next puzzle).
        `halt_threshold`: the model says halt where Q-halt (minus Q-continue, for a model that learns
        it) exceeds this, 0 as in training; a higher one makes it think longer (halt_step follows it)."""
        if halting not in HALTING:
            raise ValueError(f"halting must be one of {', '.join(map(repr, HALTING))}, got {halting!r}")
        if isinstance(halt_threshold, bool) or not isinstance(halt_threshold, (int, float)) or \
                not math.isfinite(halt_threshold):
            raise ValueError(f"halt_threshold must be a finite number, got {halt_threshold!r}")
        inputs, puzzle_identifiers, labels = self._checked(inputs, puzzle_identifiers, labels)
        if self._weight_versions(self.model) != self._versions:
            self.refresh()

        n, cfg = inputs.shape[0], self.config
        out = self._empty_solution(n, labels is not None, return_logits)
        if n == 0:
            return out
        # a compiled step has one shape: every call runs batch_size rows; eager steps need no more than n
        rows = self._rows_for(self.batch_size if self.compiled else min(self.batch_size, n))
        width = rows.halted.shape[0] // TAIL_DIVISOR
        narrow = self._rows_for(width) if halting == "q" and self.narrow_tail and width >= 1 else None
        queue = self._queue_for(n, rows)
        for captured in (rows, narrow) if self.graphs else ():
            if captured is not None:
                self._capture(captured, queue)
        for start in range(0, n, queue.capacity):
            part = slice(start, min(n, start + queue.capacity))
            rows.clear()
            queue.load(inputs[part], puzzle_identifiers[part], None if labels is None else labels[part], halting == "q",
                       halt_threshold)
            count = part.stop - part.start
            if halting == "all":  # rows move in lockstep: every halt_max_steps steps, a full batch is done
                self._run(rows, queue, cfg.halt_max_steps * math.ceil(count / rows.halted.shape[0]))
            else:
                self._run_until_done(rows, queue, count, narrow)
            self._collect(queue, out, part)
        return out

    def _checked(self, inputs, puzzle_identifiers, labels):
        """The arguments as tensors, with one error naming the first bad one."""
        cfg, named = self.config, {}
        for name, t in (("inputs", inputs), ("puzzle_identifiers", puzzle_identifiers), ("labels", labels)):
            if t is None:
                continue
            if isinstance(t, np.ndarray):
                t = torch.from_numpy(t)
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TypeError(f"{name} must hold integer ids, got {t.dtype}")
            named[name] = t
        inputs = named["inputs"]
        if inputs.ndim != 2 or inputs.shape[1] != cfg.seq_len:
            raise ValueError(f"inputs must have shape (N, seq_len={cfg.seq_len}), got {tuple(inputs.shape)}")
        n = inputs.shape[0]
        if tuple(named["puzzle_identifiers"].shape) != (n,):
            raise ValueError(f"puzzle_identifiers must have shape ({n},), one id per row of inputs, got "
                             f"{tuple(named['puzzle_identifiers'].shape)}")
        if "labels" in named and named["labels"].shape != inputs.shape:
            raise ValueError(f"labels must have the shape of inputs {tuple(inputs.shape)}, got "
                             f"{tuple(named['labels'].shape)}")
        if n > 0:
            check_ranges(cfg, named, what="{}")
        return named["inputs"], named["puzzle_identifiers"], named.get("labels")

    def _empty_solution(self, n: int, with_labels: bool, return_logits: bool) -> Solution:
        cfg, dev = self.config, self.device
        ints = lambda *shape: torch.empty(shape, dtype=torch.int32, device=dev)  # noqa: E731
        return Solution(ints(n, cfg.seq_len), ints(n), torch.empty(n, device=dev), ints(n),
                        torch.empty(n, cfg.seq_len, cfg.vocab_size, dtype=self.dtype, device=dev) if return_logits else None,
                        ints(n, cfg.halt_max_steps) if with_labels else None)

    @staticmethod
    def _collect(queue: Queue, out: Solution, part: slice):
        n = part.stop - part.start
        out.preds[part] = queue.preds[:n]
        out.steps[part] = queue.steps[:n]
        out.q_halt_logits[part] = queue.q_halt_logits[:n]
        out.halt_step[part] = queue.first_halt[:n]
        if out.logits is not None:
            out.logits[part] = queue.logits[:n]
        if out.correct_tokens is not None:
            out.correct_tokens[part] = queue.correct[:n]

    # -- static state -----------------------------------------------------------------------------------

    def _rows_for(self, count: int) -> Rows:
        if count not in self._rows:
            cfg = self.config
            self._rows[count] = Rows.allocate(count, cfg.full_seq_len, cfg.seq_len, cfg.hidden_size, self.dtype,
                                              self.device)
        return self._rows[count]

    def _queue_for(self, n: int, rows: Rows) -> Queue:
        """The queue, grown when it holds fewer than min(n, what QUEUE_BYTES allows) puzzles."""
        cfg = self.config
        per_puzzle = Queue.bytes_per_puzzle(cfg.seq_len, cfg.vocab_size, cfg.halt_max_steps, self.dtype)
        wanted = max(rows.halted.shape[0], min(n, QUEUE_BYTES // per_puzzle))
        if self._queue is None or self._queue.capacity < wanted:
            self._queue = None
            # the graphs read the old queue's addresses; their memory pool goes with them (capturing into
            # a pool whose graphs are all gone trips an internal assert of PyTorch's allocator)
            self._captured.clear()
            self._pool = None
            self._queue = Queue.allocate(wanted, cfg.seq_len, cfg.vocab_size, cfg.halt_max_steps, self.dtype,
                                         self.device)
        return self._queue

    # -- running steps ----------------------------------------------------------------------------------

    def _step_once(self, rows: Rows, queue: Queue):
        self._books.refill(rows, queue)
        logits, q_halt, margin = self._step(rows.z_H, rows.z_L, rows.inputs, rows.puzzle_identifiers, rows.steps,
                                            rows.halted)
        self._books.settle(rows, queue, logits, q_halt, margin, self.config.halt_max_steps)

    def _run(self, rows: Rows, queue: Queue, steps: int):
        if not self.graphs:
            for _ in range(steps):
                self._step_once(rows, queue)
            return
        count = rows.halted.shape[0]
        for _ in range(steps // STEPS_PER_REPLAY):
            self._captured[(count, STEPS_PER_REPLAY)].replay()
        for _ in range(steps % STEPS_PER_REPLAY):
            self._captured[(count, 1)].replay()

    def _run_until_done(self, rows: Rows, queue: Queue, count: int, narrow: Optional[Rows]):
        """halting="q": steps until every queued puzzle has halted, the last ones on the `narrow` rows when
        given; one host read per replay."""
        every = STEPS_PER_REPLAY if self.graphs else 1
        limit = self.config.halt_max_steps * count + every  # each puzzle takes at most halt_max_steps steps
        for _ in range(0, limit, every):
            self._run(rows, queue, every)
            waiting, working = torch.stack([queue.size - queue.next, (~rows.halted).sum()]).tolist()
            if waiting == 0 and working == 0:
                return
            if narrow is not None and waiting == 0 and working <= narrow.halted.shape[0]:
                rows.move_working_to(narrow)
                rows, narrow = narrow, None
        raise RuntimeError(f"Engine: {count} puzzles did not all halt within {limit} steps")

    def _capture(self, rows: Rows, queue: Queue):
        """Compile (on the first call) and capture the steps as CUDA graphs, once per batch size and queue.
        The warm-up runs real steps, on an empty queue, so every row idles and nothing is recorded."""
        count = rows.halted.shape[0]
        if (count, STEPS_PER_REPLAY) in self._captured:
            return
        queue.size.zero_()
        queue.next.zero_()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # compile, autotune, and let the allocator settle
                self._step_once(rows, queue)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        for steps in (STEPS_PER_REPLAY, 1):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                for _ in range(steps):
                    self._step_once(rows, queue)
            self._captured[(count, steps)] = graph
