"""Time one training step and the whole 16-step evaluation of a config, per backend, on the same
weights and inputs, and write rows as ../shared/BENCH.md defines them.

Backends:
- reference-eager    plain PyTorch, as the official code runs without compile
- reference-compile  torch.compile (default mode) of the loss head, as the official training script does
- reference-graphs   torch.compile(mode="reduce-overhead") with the carry copied out of the graph pool
                     (the user-level workaround the official model needs); evaluation only, small batches
- fused              trm_fast's kernels (backend="fused"), the rest under torch.compile (default mode)
"""

import datetime
import time

import torch

import trm_fast
from trm_fast.models import Carry, InnerCarry

from . import ceilings
from .configs import CONFIGS, model_config
from .flops import layer_flops, step_flops
from .timing import summary, time_unit

BACKENDS = ("reference-eager", "reference-compile", "reference-graphs", "fused")
GRAPHS_MAX_BATCH = 64


def make_batch(cfg, batch: int, device, seed: int = 0):
    """Random tokens, labels and puzzle ids (timing does not depend on their values)."""
    g = torch.Generator().manual_seed(seed)
    data = dict(
        inputs=torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g, dtype=torch.int32),
        labels=torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g, dtype=torch.int32),
        puzzle_identifiers=torch.randint(0, cfg.num_puzzle_identifiers, (batch,), generator=g, dtype=torch.int32),
    )
    return {k: v.to(device) for k, v in data.items()}


def _clone_carry(c: Carry) -> Carry:
    # CUDA-graph outputs live in the graph's pool and are overwritten by the next replay.
    return Carry(InnerCarry(c.inner_carry.z_H.clone(), c.inner_carry.z_L.clone()), c.steps.clone(),
                 c.halted.clone(), {k: v.clone() for k, v in c.current_data.items()})


def _callable(head, backend: str):
    if backend == "reference-eager":
        return head
    if backend == "reference-graphs":
        compiled = torch.compile(head, mode="reduce-overhead", dynamic=False)

        def call(**kwargs):
            torch.compiler.cudagraph_mark_step_begin()
            carry, *rest = compiled(**kwargs)
            return (_clone_carry(carry), *rest)
        return call
    return torch.compile(head, dynamic=False)


def _build(name: str, batch: int, backend: str, state_dict, device):
    cls = CONFIGS[name][0]
    with torch.device(device):  # built in place, as the official training script does
        model = cls(model_config(name, batch, "fused" if backend == "fused" else "reference"))
    model.load_state_dict(state_dict)
    return model, trm_fast.ACTLossHead(model, "stablemax_cross_entropy")


def _train_unit(model, head, fn, batch):
    model.train()
    opts = [trm_fast.AdamATan2(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)]
    if model.config.puzzle_emb_ndim > 0:
        opts.append(trm_fast.SignSGD(model.puzzle_emb.buffers(), lr=1e-2, weight_decay=0.1))
    state = {"carry": head.initial_carry(batch)}

    def unit():
        state["carry"], loss, _, _, _ = fn(return_keys=[], carry=state["carry"], batch=batch)
        loss.backward()
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)
    return unit


def _infer_unit(model, head, fn, batch):
    model.eval()

    def unit():
        with torch.inference_mode():
            carry = head.initial_carry(batch)
            for _ in range(model.config.halt_max_steps):
                carry, *_ = fn(return_keys=["preds"], carry=carry, batch=batch)
    return unit


def run(name: str, modes, backends, batches, device, commit: str = "unknown", warmup: int = 3,
        reps_train: int = 10, reps_infer: int = 5, log=print):
    """Benchmark `name` for every (mode, batch, backend); return the rows."""
    device = torch.device(device)
    for b in backends:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    for m in modes:
        if m not in ("train", "infer"):
            raise ValueError(f"unknown mode {m!r}; choose 'train' or 'infer'")
    rows = []
    for batch in batches:
        torch.manual_seed(0)
        ref_model = CONFIGS[name][0](model_config(name, batch, "reference"))
        cfg, is_hrm = ref_model.config, isinstance(ref_model, trm_fast.HRM)
        state_dict = ref_model.state_dict()
        del ref_model
        inputs = make_batch(cfg, batch, device)
        ceil = ceilings.measure(cfg, batch, device) if device.type == "cuda" else None
        for mode in modes:
            train = mode == "train"
            steps = 1 if train else cfg.halt_max_steps
            flops = steps * step_flops(cfg, is_hrm, batch, train, ref_learns_q(cfg, is_hrm))
            for backend in backends:
                if backend == "reference-graphs" and (train or batch > GRAPHS_MAX_BATCH or device.type != "cuda"):
                    continue
                row = dict(config=name, mode=mode, backend=backend, batch=batch, seq=cfg.full_seq_len, steps=steps)
                try:
                    row.update(_measure(name, batch, backend, state_dict, device, inputs, train, warmup,
                                        reps_train if train else reps_infer))
                except Exception as err:  # a failing backend is reported, not hidden
                    row["error"] = f"{type(err).__name__}: {str(err)[:500]}"
                row["gflop"] = flops / 1e9
                if "ms" in row:
                    row["tflops"] = flops / (row["ms"] * 1e-3) / 1e12
                    row["puzzles_per_s"] = batch / (row["ms"] / 1e3) if not train else None
                row["floor_ms"] = (flops / (batch * layer_flops(cfg)) * ceil["layer_floor_ms"]) if ceil else None
                row.update(_provenance(device, commit))
                if ceil:
                    row["ceilings"] = ceil
                if backend == "fused":
                    row["note"] = "trm_fast kernels (add_rms_norm, swiglu) inside torch.compile of the rest"
                rows.append(row)
                log(_format(row))
                torch._dynamo.reset()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def ref_learns_q(cfg, is_hrm: bool) -> bool:
    return is_hrm or not cfg.no_ACT_continue


def _measure(name, batch, backend, state_dict, device, inputs, train, warmup, reps):
    model, head = _build(name, batch, backend, state_dict, device)
    fn = _callable(head, backend)
    unit = (_train_unit if train else _infer_unit)(model, head, fn, inputs)
    t0 = time.perf_counter()
    for _ in range(warmup):
        unit()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    warmup_s = time.perf_counter() - t0
    times = time_unit(unit, device, reps)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return dict(summary(times), warmup_s=warmup_s, peak_gib=peak)


def _provenance(device, commit):
    import triton

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return dict(device=name, torch=torch.__version__, triton=triton.__version__, commit=commit,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _format(row) -> str:
    if "error" in row:
        return f"{row['config']:12s} {row['mode']:5s} b={row['batch']:<4d} {row['backend']:18s} ERROR {row['error']}"
    floor = f" floor {row['floor_ms']:9.2f} ms ({row['ms'] / row['floor_ms']:.2f}x)" if row["floor_ms"] else ""
    mem = f" peak {row['peak_gib']:.2f} GiB" if row["peak_gib"] is not None else ""
    return (f"{row['config']:12s} {row['mode']:5s} b={row['batch']:<4d} {row['backend']:18s} "
            f"{row['ms']:9.2f} ms [{row['ms_min']:.2f}, {row['ms_max']:.2f}] {row['tflops']:7.1f} TFLOP/s"
            f"{floor}{mem} warmup {row['warmup_s']:.1f} s")
