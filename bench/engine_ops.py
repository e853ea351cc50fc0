"""Which ops should trm_fast.Engine run on this GPU? Times one 16-step evaluation through the engine with
its step on each backend (`Engine(ops=...)`; `auto`: trm_fast's kernels where they run; `reference`: plain
PyTorch ops, which torch.compile fuses on its own), same weights and inputs, and prints a JSON line per
measurement.

    python bench/engine_ops.py sudoku_attn 1,768 [--out rows.json] [--auto-ops add_rms_norm,swiglu,linear_swiglu]...

`--auto-ops` sets the kernels `auto` may run (trm_fast.backend.AUTO_OPS): the way to time a kernel inside the
engine before `auto` takes it. Given more than once, `auto` is timed with each set in turn. `--kernels N` adds to
each row the N kernels that took longest in one more solve under torch.profiler, summed by name (us per solve and
calls): where two sets' times part. That solve runs without CUDA graphs (the profiler does not see a replayed
graph's kernels), so only its kernels' times, not its wall time, compare with the rows.
"""

import argparse
import time

import torch

import trm_fast
from trm_fast import backend
from trm_fast.bench import clocks, configs, harness
from trm_fast.bench.report import emit
from trm_fast.bench.timing import summary, time_unit


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("batches")
    parser.add_argument("--ops", default="auto,reference", help="comma list of backends to build the model on")
    parser.add_argument("--auto-ops", action="append",
                        help="comma list replacing trm_fast.backend.AUTO_OPS; repeat it to time auto with each set")
    parser.add_argument("--attention-tma", action="store_true",
                        help="the attention op runs the persistent TMA kernel up to S 128 (where `attention` is "
                             "in the auto set; trm_fast.kernels.attention.TMA_BY_DEFAULT)")
    parser.add_argument("--token-mix-pointer", action="store_true",
                        help="MLP-t's token mix runs its pointer kernel, not the TMA one (where `token_mix` is in "
                             "the auto set; trm_fast.kernels.token_mix.TMA_BY_DEFAULT)")
    parser.add_argument("--sdpa", choices=("cudnn", "flash", "efficient", "math"),
                        help="the one backend PyTorch's scaled_dot_product_attention may pick (default: any; cuDNN's "
                             "on Hopper, three kernels a call at batch 1)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--kernels", type=int, default=0, metavar="N",
                        help="add the N longest kernels of one profiled solve (graphs off) to each row")
    parser.add_argument("--out")
    args = parser.parse_args()
    auto_sets = [set(filter(None, ops.split(","))) for ops in args.auto_ops] if args.auto_ops else [backend.AUTO_OPS]
    if args.attention_tma:
        from trm_fast.kernels import attention

        attention.TMA_BY_DEFAULT = True
    if args.token_mix_pointer:
        from trm_fast.kernels import token_mix

        token_mix.TMA_BY_DEFAULT = False
    if args.sdpa:  # read when the step is traced: every row of this process
        for name, switch in (("cudnn", "enable_cudnn_sdp"), ("flash", "enable_flash_sdp"),
                             ("efficient", "enable_mem_efficient_sdp"), ("math", "enable_math_sdp")):
            getattr(torch.backends.cuda, switch)(name == args.sdpa)
    runs = [(ops, auto) for ops in args.ops.split(",") for auto in (auto_sets if ops == "auto" else [None])]
    bc, device = configs.load(args.config), torch.device("cuda")
    for batch in map(int, args.batches.split(",")):
        torch.manual_seed(0)
        state = bc.build(batch, "reference").state_dict()
        inputs = harness.make_batch(bc.build(1, "reference").config, batch, device)
        for ops, auto_ops in runs:
            if auto_ops is not None:
                backend.AUTO_OPS = auto_ops
            with torch.device(device):
                model = bc.build(batch, "reference")
            model.load_state_dict(state)
            engine = trm_fast.Engine(model.eval(), batch, ops=ops)
            t0 = time.perf_counter()
            for _ in range(3):
                engine.solve(inputs["inputs"], inputs["puzzle_identifiers"])
            torch.cuda.synchronize()
            warm = time.perf_counter() - t0
            torch.cuda.reset_peak_memory_stats()
            with clocks.ClockSampler(device) as sampled:
                times = time_unit(lambda: engine.solve(inputs["inputs"], inputs["puzzle_identifiers"]), device,
                                  args.reps)
            row = dict(config=bc.name, batch=batch, ops=ops, auto_ops=sorted(auto_ops or ()), warmup_s=warm,
                       attention_tma=args.attention_tma, token_mix_tma=not args.token_mix_pointer, sdpa=args.sdpa,
                       **summary(times), peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                       device=torch.cuda.get_device_name(), **sampled.fields())
            if args.kernels:
                row.update(kernels(model, batch, ops, inputs, args.kernels))
            emit(row, args.out)
            del engine, model
            torch._dynamo.reset()
            torch.cuda.empty_cache()


def kernels(model, batch: int, ops: str, inputs, top: int) -> dict:
    """One solve of the same model under torch.profiler, graphs off: its kernels' total and the `top` longest,
    summed by name (us per solve)."""
    from trm_fast.profile.kernels import by_kernel, collect

    engine = trm_fast.Engine(model, batch, ops=ops, cuda_graphs=False)
    engine.solve(inputs["inputs"], inputs["puzzle_identifiers"])  # compiled and warm before the profiled solve
    on_gpu = inputs["inputs"].is_cuda  # on a CPU (the tests) the ops' own times stand in for kernels
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    with torch.profiler.profile(activities=activities) as prof:
        engine.solve(inputs["inputs"], inputs["puzzle_identifiers"])
        if on_gpu:
            torch.cuda.synchronize()
    groups = by_kernel(collect(prof.events(), on_gpu))
    ranked = sorted(groups.items(), key=lambda kv: -kv[1].us)
    return dict(kernels_us=sum(g.us for g in groups.values()),
                kernels_top=[dict(kernel=name, us=round(g.us, 1), calls=g.calls) for name, g in ranked[:top]])


if __name__ == "__main__":
    main()
