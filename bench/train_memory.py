"""Where a training step's memory goes: for one bench config and batch, the bytes held after the forward
(what autograd keeps for the backward) and the peak of the whole step, eager and compiled, with and
without arch recompute. One JSON line per variant.

    python bench/train_memory.py sudoku_attn --batch 768 --json memory.jsonl
"""

import argparse
import json

import torch

import trm_fast
from trm_fast.bench import configs
from trm_fast.bench.harness import make_batch


def measure(bc, batch, compile, recompute, device):
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
    return dict(config=bc.name, batch=batch, compile=compile, recompute=recompute, held_after_forward_gib=held / gib,
                forward_peak_gib=forward_peak / gib, step_peak_gib=step_peak / gib, base_gib=base / gib)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--variants", default="eager,eager+recompute,compile,compile+recompute")
    parser.add_argument("--commit", default="")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    bc, device = configs.load(args.config), torch.device("cuda")
    for variant in args.variants.split(","):
        row = measure(bc, args.batch or bc.batch, variant.startswith("compile"), variant.endswith("+recompute"),
                      device)
        row.update(commit=args.commit, device=torch.cuda.get_device_name(device))
        print(json.dumps(row), flush=True)
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")
        torch._dynamo.reset()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
