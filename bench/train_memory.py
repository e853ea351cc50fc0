"""Where a training step's memory goes: for one bench config and batch, the bytes held after the forward
(what autograd keeps for the backward, and which tensors those are) and the peak of the whole step, eager
and compiled, with and without arch recompute, for each set of `auto`'s kernels asked for; with the step's
forward + backward time, the price of what it saves. One JSON line per variant and set.

    python bench/train_memory.py sudoku_attn --batch 768 --json memory.jsonl
    python bench/train_memory.py sudoku_attn --variants compile --auto-ops add_rms_norm,swiglu,linear_swiglu \
        --auto-ops add_rms_norm,swiglu,linear_swiglu,swiglu_linear --json memory.jsonl
    python bench/train_memory.py sudoku_attn --variants compile --auto-ops A --auto-ops B --interleave 5 ...

`--interleave`: the variants' times in turns within one process, for differences smaller than the step's drift
from one process (or one variant) to the next (up to 3.6 ms on an H100, bench/NOTES.md).
"""

import argparse
import collections
import statistics

import torch

import trm_fast
from trm_fast import backend
from trm_fast.bench import clocks, configs
from trm_fast.bench.harness import make_batch
from trm_fast.bench.report import emit


def kept_tensors(fn, top: int = 8, **kwargs):
    """The tensors autograd keeps for the backward of one forward `fn(**kwargs)`, one per storage, grouped by
    shape and dtype: the `top` largest groups as [shape, dtype, count, GiB]; the forward's outputs too."""
    seen = {}

    def pack(t):
        seen.setdefault(t.untyped_storage().data_ptr(), (tuple(t.shape), str(t.dtype).removeprefix("torch."),
                                                         t.untyped_storage().nbytes()))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(**kwargs)
    count, size = collections.Counter(), collections.Counter()
    for shape, dtype, nbytes in seen.values():
        count[shape, dtype] += 1
        size[shape, dtype] += nbytes
    largest = sorted(size, key=size.get, reverse=True)[:top]
    return [[list(shape), dtype, count[shape, dtype], size[shape, dtype] / 2.0**30] for shape, dtype in largest], out


class Step:
    """One variant's training step, built and compiled under its own set of `auto`'s kernels (AUTO_OPS is read
    while torch.compile traces), its memory measured after the allocator's warm-up."""

    def __init__(self, bc, batch, compile, recompute, device, auto_ops):
        self.auto_ops, self.device = auto_ops, device
        backend.AUTO_OPS = auto_ops
        torch.manual_seed(0)
        with torch.device(device):
            self.model = bc.build(batch, "auto", recompute=recompute).train()
        head = trm_fast.ACTLossHead(self.model, bc.loss_type)
        self.fn = trm_fast.engine.training_forward(head, device, compile)
        self.data = make_batch(self.model.config, batch, device)
        self.carry = head.initial_carry(self.data)
        gib = 2.0**30
        for _ in range(3):  # the last step is measured, after compilation and the allocator's warm-up
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.carry, loss, *_ = self.fn(return_keys=[], carry=self.carry, batch=self.data)
            torch.cuda.synchronize(device)
            held = torch.cuda.memory_allocated(device) - base
            forward_peak = torch.cuda.max_memory_allocated(device) - base
            loss.backward()
            torch.cuda.synchronize(device)
            step_peak = torch.cuda.max_memory_allocated(device) - base
            self.model.zero_grad(set_to_none=True)
            del loss
        kept, (self.carry, loss, *_) = kept_tensors(self.fn, return_keys=[], carry=self.carry, batch=self.data)
        loss.backward()
        self.model.zero_grad(set_to_none=True)
        self.row = dict(config=bc.name, batch=batch, compile=compile, recompute=recompute,
                        held_after_forward_gib=held / gib, forward_peak_gib=forward_peak / gib,
                        step_peak_gib=step_peak / gib, base_gib=base / gib, kept=kept)

    def time(self, steps):
        """Milliseconds of each of `steps` forward + backward passes (no optimizer: what storing or recomputing
        changes), under the set it was compiled with."""
        backend.AUTO_OPS = self.auto_ops
        times = []
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.carry, loss, *_ = self.fn(return_keys=[], carry=self.carry, batch=self.data)
            loss.backward()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
            self.model.zero_grad(set_to_none=True)
        return times


def _recompute(variant: str):
    """arch recompute's value for a variant: "compile+recompute" True, "eager+recompute=mlp" "mlp", else False."""
    _, _, mode = variant.partition("+recompute")
    return mode[1:] if mode.startswith("=") else variant.endswith("+recompute")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--variants", default="eager,eager+recompute,compile,compile+recompute",
                        help="comma list of eager or compile, each alone or with +recompute (arch recompute: true) "
                             "or +recompute=mlp")
    parser.add_argument("--auto-ops", action="append",
                        help="comma list replacing trm_fast.backend.AUTO_OPS; repeat it to measure each set")
    parser.add_argument("--timed-steps", type=int, default=5, help="steps timed per variant (per round)")
    parser.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                        help="build every variant first, then time them in turns, ROUNDS times (the median of "
                             "each round's steps; the rows give the median of the rounds and every round)")
    parser.add_argument("--commit", default="")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    bc, device = configs.load(args.config), torch.device("cuda")
    auto_sets = [set(filter(None, ops.split(","))) for ops in args.auto_ops] if args.auto_ops else [backend.AUTO_OPS]
    variants = [(v, a) for v in args.variants.split(",") for a in auto_sets]
    if args.interleave:
        # every variant built first, then timed in turns: a drift of the GPU's clocks or of the machine's load
        # falls on all of them alike, where one after the other it reads as a difference between them. Each
        # variant's model is one more entry in the compile cache of the same code: room for all of them
        limit = 8 * max(1, len(variants))
        name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
        setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), limit))
        steps = [Step(bc, args.batch or bc.batch, v.startswith("compile"), _recompute(v), device, a)
                 for v, a in variants]
        with clocks.ClockSampler(device) as sampled:  # the clocks of all the rounds, on every variant's line
            rounds = [[statistics.median(step.time(args.timed_steps)) for step in steps]
                      for _ in range(args.interleave)]
        for i, ((variant, auto_ops), step) in enumerate(zip(variants, steps)):
            per_round = [r[i] for r in rounds]
            emit(dict(step.row, forward_backward_ms=statistics.median(per_round), rounds_ms=per_round,
                      interleaved=len(steps), auto_ops=sorted(auto_ops), commit=args.commit,
                      device=torch.cuda.get_device_name(device), **sampled.fields()), args.json)
        return
    for variant, auto_ops in variants:
        step = Step(bc, args.batch or bc.batch, variant.startswith("compile"), _recompute(variant), device, auto_ops)
        with clocks.ClockSampler(device) as sampled:
            times = step.time(args.timed_steps)
        emit(dict(step.row, forward_backward_ms=statistics.median(times) if times else None,
                  auto_ops=sorted(auto_ops), commit=args.commit, device=torch.cuda.get_device_name(device),
                  **sampled.fields()), args.json)
        del step
        torch._dynamo.reset()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
