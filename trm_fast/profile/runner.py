"""Run a few training steps or evaluations of a bench config under torch.profiler, with the recursion's
ranges named (stages.py), and write the table, the trace, the per-kernel JSON and the roofline."""

import json
import os
import time

import torch

import trm_fast

from ..bench import ceilings, harness
from . import kernels, roofline
from .stages import Marker, annotate


def build_unit(bc, mode: str, backend: str, batch: int, device, compile_: bool, marker: Marker):
    """The unit of work, with the recursion's ranges named. Eager by default, so every level is attributed;
    compiled (as `trm-fast bench` runs it) the ranges inside the model are gone and the ACT step is the
    finest stage. The engine runs without its CUDA graphs here: torch.profiler does not see the kernels of
    a replayed graph."""
    torch.manual_seed(0)
    model, head = harness.model_and_head(bc, batch, backend, bc.build(batch, "reference").state_dict(), device)
    inputs = harness.make_batch(model.config, batch, device)
    if mode == "infer" and backend == "engine":
        engine = trm_fast.Engine(model.eval(), batch, compile=compile_, cuda_graphs=False)
        if not compile_:
            annotate(engine.step, engine.core, engine.config, marker)

        def solve():
            with marker("evaluation"):
                engine.solve(inputs["inputs"], inputs["puzzle_identifiers"])
        return model, solve
    if compile_:
        fn = harness.callable_for(head, "reference-compile" if backend in ("reference-eager", "engine") else backend)
    else:
        fn = head
        annotate(model, model.inner, model.config, marker)

    def act_step(*args, **kwargs):
        with marker("act_step"):
            return fn(*args, **kwargs)
    if mode == "train":
        return model, harness.train_unit(model, head, act_step, inputs, mark=marker)
    return model, harness.infer_unit(model, head, act_step, inputs)


def profile(bc, mode: str, backend: str, batch: int, device, out_dir: str, steps: int = 2, warmup: int = 2,
            compile_: bool = False, depth: int = 4, top: int = 5, log=print):
    """Profile `steps` units after `warmup`; write profile.txt (the tables), kernels.json (per stage and
    kernel, per unit), roofline.png and trace.json.gz into `out_dir`; return the summary with the text."""
    device = torch.device(device)
    harness.check([mode], [backend], [batch], device)
    if backend == "reference-graphs":
        raise harness.BackendUnavailable("profile takes fused, reference-eager or reference-compile "
                                         "(graph replays hide the kernels' launching ops)")
    compile_ = compile_ or backend == "reference-compile"
    on_gpu = device.type == "cuda"
    os.makedirs(out_dir, exist_ok=True)
    marker = Marker(nvtx=on_gpu)
    model, unit = build_unit(bc, mode, backend, batch, device, compile_, marker)
    sync = (lambda: torch.cuda.synchronize(device)) if on_gpu else (lambda: None)
    log(f"warming up ({warmup} {mode} units{', compiling' if compile_ else ''})")
    t0 = time.perf_counter()
    for _ in range(warmup):
        unit()
    sync()
    warmup_s = time.perf_counter() - t0

    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    log(f"profiling {steps} {mode} units")
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        t0 = time.perf_counter()
        for i in range(steps):
            with marker(f"unit {i}"):
                unit()
        sync()
        wall_ms = (time.perf_counter() - t0) * 1e3 / steps
    elt = torch.empty((), dtype=getattr(torch, model.config.forward_dtype)).element_size()
    records = kernels.collect(prof.events(), on_gpu, elt, model.config.num_heads)
    trace = os.path.join(out_dir, "trace.json.gz")
    prof.export_chrome_trace(trace)

    ceil = ceilings.measure(model.config, batch, device) if on_gpu else None
    peak = max(g["tflops"] for g in ceil["gemm"]) if ceil else None
    copy = ceil["copy_tb_per_s"] if ceil else None
    unit_name = "step" if mode == "train" else "eval"
    kernel_ms = sum(k.us for k in records) / steps / 1e3
    title = (f"{bc.name} {mode} batch {batch} {backend}{' compiled' if compile_ else ''}: "
             f"{'GPU kernels' if on_gpu else 'CPU ops'} {kernel_ms:.2f} ms per {unit_name}, wall {wall_ms:.2f} ms")
    text = "\n\n".join([
        title,
        kernels.format_categories(records, steps, unit_name),
        kernels.format_table(records, steps, depth, top, unit_name),
    ])
    if ceil:
        text += (f"\n\nceilings measured in this run: {peak:.0f} TFLOP/s (best cuBLAS rate at the model's GEMM "
                 f"shapes), {copy:.2f} TB/s device-to-device copy")
    with open(os.path.join(out_dir, "profile.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    roofline.plot(records, os.path.join(out_dir, "roofline.png"), peak, copy, title)
    summary = dict(config=bc.name, mode=mode, backend=backend, batch=batch, compiled=bool(compile_), steps=steps,
                   warmup_s=warmup_s, wall_ms=wall_ms, kernel_ms=kernel_ms, device=str(device), ceilings=ceil,
                   kernels=kernels.aggregate(records, steps))
    with open(os.path.join(out_dir, "kernels.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f)
    summary["text"] = text
    return summary
