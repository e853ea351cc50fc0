"""The largest training batch that fits a GPU of a given size: for each bench config, ops and budget, full
training steps (forward through the loss head, backward, AdamATan2 and SignSGD) under an allocator capped at
the budget, searched by bisection. One JSON line per (config, variant, budget).

    python bench/train_fit.py sudoku_attn arc_attn --gib 24,80 --json fit.jsonl

Variants: `reference` (the official model's ops), `engine` (the trainer's ops, `auto`), `engine+recompute`
(arch recompute: true) and `engine+recompute=mlp` (arch recompute: mlp). Steps run eagerly: compiled, each
batch size would compile anew (a minute apiece); the compiled step's peak is within 1% of the eager one's
(bench/results/..._memory.jsonl).
The cap (torch.cuda.set_per_process_memory_fraction) limits what PyTorch's allocator may hold, which is what
a smaller GPU would leave it, less the CUDA context and libraries' workspaces outside the allocator.
"""

import argparse

import torch

import trm_fast
from trm_fast.bench import configs
from trm_fast.bench.harness import make_batch, train_unit
from trm_fast.bench.report import emit

VARIANTS = {"reference": ("reference", False), "engine": ("auto", False), "engine+recompute": ("auto", True),
            "engine+recompute=mlp": ("auto", "mlp")}


def fits(bc, batch: int, ops: str, recompute, device) -> bool:
    """Whether two training steps at `batch` run within the allocator's cap (the second holds the optimizer
    state the first creates)."""
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = bc.build(batch, ops, recompute=recompute)
        head = trm_fast.ACTLossHead(model, bc.loss_type)
        unit = train_unit(model, head, head, make_batch(model.config, batch, device))
        for _ in range(2):
            unit()
        torch.cuda.synchronize(device)
        return True
    except torch.OutOfMemoryError:
        return False
    except RuntimeError as err:  # a library's own workspace (cuBLAS, cuDNN) failing to allocate under the cap
        if "ALLOC_FAILED" in str(err) or "out of memory" in str(err):
            return False
        raise
    finally:
        model = head = unit = None  # noqa: F841 (free before the next trial)
        torch.cuda.empty_cache()


def largest(bc, ops: str, recompute, device, start: int) -> tuple:
    """(largest batch that fits, smallest that does not, trials), doubling from `start`, then bisecting to
    within 1%."""
    trials = 0
    lo, hi = 0, start
    while True:  # grow until a batch fails
        trials += 1
        if not fits(bc, hi, ops, recompute, device):
            break
        lo, hi = hi, 2 * hi
    while hi - lo > max(1, lo // 100):
        mid = (lo + hi) // 2
        trials += 1
        if fits(bc, mid, ops, recompute, device):
            lo = mid
        else:
            hi = mid
    return lo, hi, trials


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--gib", default="24,80", help="comma list of memory budgets in GiB")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--commit", default="")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    device = torch.device("cuda", torch.cuda.current_device())  # the memory cap takes an indexed device
    total = torch.cuda.get_device_properties(device).total_memory
    budgets = [float(g) for g in args.gib.split(",")]
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    for name in args.configs:
        bc = configs.load(name)
        for variant in args.variants.split(","):
            ops, recompute = VARIANTS[variant]
            for gib in budgets:
                if gib * 2**30 > total:
                    raise SystemExit(f"--gib {gib}: this GPU has {total / 2**30:.0f} GiB")
                torch.cuda.set_per_process_memory_fraction(gib * 2**30 / total, device)
                lo, hi, trials = largest(bc, ops, recompute, device, start=bc.batch // 4)
                row = dict(config=name, variant=variant, gib=gib, largest_batch=lo, fails_at=hi, trials=trials,
                           commit=args.commit, device=torch.cuda.get_device_name(device))
                emit(row, args.json)
    torch.cuda.set_per_process_memory_fraction(1.0, device)


if __name__ == "__main__":
    main()
