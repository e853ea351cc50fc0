"""Where a training step's memory goes: for one bench config and batch, the bytes held after the forward
(what autograd keeps for the backward, and which tensors those are) and the peak of the whole step, eager
and compiled, with and without arch recompute, for each set of `auto`'s kernels asked for; with the step's
forward + backward time, the price of what it saves. One JSON line per variant and set.

    python bench/train_memory.py sudoku_attn --batch 768 --json memory.jsonl
    python bench/train_memory.py sudoku_attn --variants compile --auto-ops add_rms_norm,swiglu,linear_swiglu \
        --auto-ops add_rms_norm,swiglu,linear_swiglu,swiglu_linear --json memory.jsonl
"""

import argparse
import collections
import statistics

import torch

import trm_fast
from trm_fast import backend
from trm_fast.bench import configs
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


def measure(bc, batch, compile, recompute, device, timed_steps):
    torch.manual_seed(0)
    with torch.device(device):
        model = bc.build(batch, "auto", recompute=recompute).train()
    head = trm_fast.ACTLossHead(model, bc.loss_type)
    fn = trm_fast.engine.training_forward(head, device, compile)
    data = make_batch(model.config, batch, device)
    carry = head.initial_carry(data)
    gib = 2.0**30
    for _ in range(3):  # the last step is measured, after compilation and the allocator's warm-up
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        carry, loss, *_ = fn(return_keys=[], carry=carry, batch=data)
        torch.cuda.synchronize(device)
        held, forward_peak = torch.cuda.memory_allocated(device) - base, torch.cuda.max_memory_allocated(device) - base
        loss.backward()
        torch.cuda.synchronize(device)
        step_peak = torch.cuda.max_memory_allocated(device) - base
        model.zero_grad(set_to_none=True)
        del loss
    kept, (carry, loss, *_) = kept_tensors(fn, return_keys=[], carry=carry, batch=data)
    loss.backward()
    model.zero_grad(set_to_none=True)
    times = []
    for _ in range(timed_steps):  # forward + backward, no optimizer: what storing or recomputing changes
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        carry, loss, *_ = fn(return_keys=[], carry=carry, batch=data)
        loss.backward()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        model.zero_grad(set_to_none=True)
    return dict(config=bc.name, batch=batch, compile=compile, recompute=recompute, held_after_forward_gib=held / gib,
                forward_peak_gib=forward_peak / gib, step_peak_gib=step_peak / gib, base_gib=base / gib,
                forward_backward_ms=statistics.median(times) if times else None, kept=kept)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--variants", default="eager,eager+recompute,compile,compile+recompute")
    parser.add_argument("--auto-ops", action="append",
                        help="comma list replacing trm_fast.backend.AUTO_OPS; repeat it to measure each set")
    parser.add_argument("--timed-steps", type=int, default=5)
    parser.add_argument("--commit", default="")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    bc, device = configs.load(args.config), torch.device("cuda")
    auto_sets = [set(filter(None, ops.split(","))) for ops in args.auto_ops] if args.auto_ops else [backend.AUTO_OPS]
    for variant, auto_ops in [(v, a) for v in args.variants.split(",") for a in auto_sets]:
        backend.AUTO_OPS = auto_ops
        row = measure(bc, args.batch or bc.batch, variant.startswith("compile"), variant.endswith("+recompute"),
                      device, args.timed_steps)
        row.update(auto_ops=sorted(auto_ops), commit=args.commit, device=torch.cuda.get_device_name(device))
        emit(row, args.json)
        torch._dynamo.reset()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
