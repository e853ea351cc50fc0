"""Config key `cuda_graph: true`: the whole training step replayed from one CUDA graph. One step is the
forward through the loss head, the backward, both optimizers, the EMA, the metric sums and the ACT carry
handed to the next step. The host then only copies the batch in, writes the learning rates and replays.

How: the first WARMUP steps run eagerly on a side stream, which compiles, autotunes and lets the allocator
settle. The next step is captured, then every step replays that capture. The graph reads fixed buffers: the
batch and the carry are copied into them, and the carry it computes is copied back into them inside the
graph. The optimizers are built capturable, with their learning rates as device tensors written in place
(optim/), and the EMA updates its averages in place.

The ids of each batch are checked as the dataset reader collates it (data/dataset.py); the model's own
value checks, which read the device, do not run in a replay, nor while capturing.

Not with several processes: the gradient all-reduce is not captured. With arch.recompute, only where the ops
recompute inside the layers (trm_fast.backend.recomputes_in_ops), not where each reasoning-module call is
checkpointed whole. Random numbers (halt exploration) come from the same generator, but a replayed graph advances it
differently from eager steps, so a run resumed with cuda_graph on draws other exploration numbers than the
uninterrupted run (with it off, a resumed run is step-for-step identical).
"""

from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..models import Carry

WARMUP = 3  # eager steps before the capture

# step(batch, carry) -> (next carry, metric names, (len(names),) float64 metric sums), all on the device
StepFn = Callable[[dict, Carry], Tuple[Carry, List[str], torch.Tensor]]


class GraphedStep:
    """Runs `step` eagerly WARMUP times, then from a CUDA graph. `optimizers` must take their lr as a 0-dim
    tensor on `device` (GraphedStep puts one in each param group)."""

    def __init__(self, step: StepFn, optimizers: Sequence[torch.optim.Optimizer], device: torch.device):
        self.check(device, 1)
        self.step, self.optimizers, self.device = step, list(optimizers), device
        self.lrs = [torch.zeros((), dtype=torch.float32, device=device) for _ in self.optimizers]
        for opt, lr in zip(self.optimizers, self.lrs):
            for group in opt.param_groups:
                group["lr"] = lr
        self.eager_left, self._side = WARMUP, None
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.batch: Optional[dict] = None
        self.carry: Optional[Carry] = None
        self.keys: List[str] = []
        self.values: Optional[torch.Tensor] = None

    @staticmethod
    def check(device: torch.device, world_size: int, checkpoints: bool = False):
        """Fail before any work where a graphed step cannot run. `checkpoints`: arch.recompute checkpoints each
        reasoning-module call whole (the reference ops)."""
        if checkpoints:
            raise ValueError("config key 'cuda_graph' does not take arch.recompute where each reasoning-module call "
                             "is checkpointed whole (the reference ops, or off a GPU: that backward has not run "
                             "inside a captured graph)")
        if device.type != "cuda":
            raise ValueError(f"config key 'cuda_graph' needs a CUDA device; this run is on {device.type}")
        if world_size > 1:
            raise ValueError(f"config key 'cuda_graph' takes one process (the gradient all-reduce is not captured); "
                             f"this run has {world_size}")

    def __call__(self, batch: dict, carry: Carry, lrs: Sequence[float]) -> Tuple[Carry, List[str], torch.Tensor]:
        """One step with these learning rates (one per optimizer): (next carry, metric names, metric sums).
        The sums are the caller's to keep; the carry, once captured, is the graph's own buffer."""
        for tensor, lr in zip(self.lrs, lrs):
            tensor.fill_(lr)
        if self.eager_left > 0:
            self.eager_left -= 1
            side = self._side = self._side or torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                out = self.step(batch, carry)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return out
        if self.graph is None:
            self._capture(batch, carry)
        for k, v in batch.items():
            self.batch[k].copy_(v, non_blocking=True)
        if carry is not self.carry:  # the carry of an eager step, or one restored from a checkpoint
            self.carry.copy_(carry)
        self.graph.replay()
        return self.carry, self.keys, self.values.clone()  # the next replay overwrites the graph's own

    def _capture(self, batch: dict, carry: Carry):
        self.batch = {k: v.clone() for k, v in batch.items()}
        self.carry = carry.clone()
        for opt in self.optimizers:  # the backward inside the graph allocates the gradients from its pool
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()  # what the eager steps left cached: the graph keeps a pool of its own
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            next_carry, self.keys, self.values = self.step(self.batch, self.carry)
            self.carry.copy_(next_carry)
        self.graph = graph  # capturing ran nothing: the caller's replay makes this step
