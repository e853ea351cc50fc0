"""Time one training step and the whole 16-step evaluation of a config, per backend, on the same
weights and inputs, and write rows as ../shared/BENCH.md defines them.

Backends:
- engine             what a user gets: trm_fast.Engine for the evaluation (compiled step, CUDA graphs),
                     the trainer's own step for training; the kernels that run fastest on the device
- reference-eager    plain PyTorch, as the official code runs without compile
- reference-compile  torch.compile (default mode) of the loss head, as the official training script does
- reference-graphs   torch.compile(mode="reduce-overhead") with the carry copied out of the graph pool
                     (the user-level workaround the official model needs); evaluation only, small batches
- fused              trm_fast's kernels (backend="fused"), the rest under torch.compile (default mode)
"""

import contextlib
import datetime
import time

import torch

import trm_fast
from trm_fast import backend

from . import ceilings, clocks
from .configs import BenchConfig
from .flops import layer_flops, step_bytes, step_flops_split
from .report import row_line
from .timing import iqr, summary, time_unit

BACKENDS = ("engine", "fused", "reference-eager", "reference-compile", "reference-graphs")
GRAPHS_MAX_BATCH = 64
_FUSED_OPS = f"trm_fast kernels ({', '.join(sorted(backend.AUTO_OPS))}) where they run"
NOTES = {
    "engine": dict(train=f"the trainer's step as trm-fast train runs it ({_FUSED_OPS}, compiled on a GPU)",
                   infer="trm_fast.Engine, halting all: compiled step ('auto' ops: elementwise work fused by "
                         "inductor, the gate/up + SwiGLU TMA kernel), CUDA graphs of 4 ACT steps"),
    "fused": dict(train=f"{_FUSED_OPS}, inside torch.compile of the rest",
                  infer=f"{_FUSED_OPS}, inside torch.compile of the rest"),
}


class BackendUnavailable(ValueError):
    """A backend asked for cannot run on this machine; the message says why."""


def unavailable(backend: str, device) -> str:
    """Why `backend` cannot run on `device`, or '' when it can."""
    from trm_fast import backend as switch

    device = torch.device(device)
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}"
    if backend == "fused":
        if device.type != "cuda":
            return f"backend 'fused' needs a CUDA device (this run is on {device.type})"
        reasons = [r for r in (switch.native_status(), switch.triton_status()) if r]
        return "backend 'fused' is unavailable: " + "; ".join(reasons) if reasons else ""
    if backend == "reference-graphs" and device.type != "cuda":
        return f"backend 'reference-graphs' captures CUDA graphs and needs a CUDA device (this run is on {device.type})"
    return ""


def default_backends(device) -> list:
    """Every backend that can run here, except reference-graphs (asked for by name)."""
    return [b for b in BACKENDS[:-1] if not unavailable(b, device)]


def make_batch(cfg, batch: int, device, seed: int = 0):
    """Random tokens, labels and puzzle ids (timing does not depend on their values)."""
    g = torch.Generator().manual_seed(seed)
    data = dict(
        inputs=torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g, dtype=torch.int32),
        labels=torch.randint(0, cfg.vocab_size, (batch, cfg.seq_len), generator=g, dtype=torch.int32),
        puzzle_identifiers=torch.randint(0, cfg.num_puzzle_identifiers, (batch,), generator=g, dtype=torch.int32),
    )
    return {k: v.to(device) for k, v in data.items()}


def callable_for(head, backend: str):
    """The loss head as `backend` runs it: eager, as the trainer runs it (compiled on a GPU), torch.compile,
    or compiled into CUDA graphs."""
    if backend == "reference-eager":
        return head
    if backend == "engine":
        return trm_fast.engine.training_forward(head, next(head.parameters()).device)
    if backend == "reference-graphs":
        compiled = torch.compile(head, mode="reduce-overhead", dynamic=False)

        def call(**kwargs):
            torch.compiler.cudagraph_mark_step_begin()
            carry, *rest = compiled(**kwargs)
            return (carry.clone(), *rest)  # the graph's pool is overwritten by the next replay
        return call
    return torch.compile(head, dynamic=False)


def model_and_head(bc: BenchConfig, batch: int, backend: str, state_dict, device):
    """The model for `backend` with these weights, on `device`, and its loss head."""
    ops = {"fused": "fused", "engine": "auto" if torch.device(device).type == "cuda" else "reference"}
    with torch.device(device):  # built in place, as the official training script does (the engine picks its own ops)
        model = bc.build(batch, ops.get(backend, "reference"), recompute=bc.recompute if backend == "engine" else False)
    model.load_state_dict(state_dict)
    return model, trm_fast.ACTLossHead(model, bc.loss_type)


def train_unit(model, head, fn, batch, mark=None):
    """One training step; `mark(name)` (a context manager) names its parts for the profiler."""
    mark = mark or (lambda name: contextlib.nullcontext())
    model.train()
    opts = [trm_fast.AdamATan2(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)]
    if model.config.puzzle_emb_ndim > 0:
        opts.append(trm_fast.SignSGD(model.puzzle_emb.buffers(), lr=1e-2, weight_decay=0.1))
    state = {"carry": head.initial_carry(batch)}

    def unit():
        with mark("forward"):
            state["carry"], loss, _, _, _ = fn(return_keys=[], carry=state["carry"], batch=batch)
        with mark("backward"):
            loss.backward()
        with mark("optimizer"):
            for opt in opts:
                opt.step()
                opt.zero_grad(set_to_none=True)
    return unit


def infer_unit(model, head, fn, batch):
    """One whole evaluation: halt_max_steps ACT steps from a fresh carry, driven step by step from
    Python as the official evaluate() does (the yardstick's loop)."""
    model.eval()

    def unit():
        with torch.inference_mode():
            carry = head.initial_carry(batch)
            for _ in range(model.config.halt_max_steps):
                carry, *_ = fn(return_keys=["preds"], carry=carry, batch=batch)
    return unit


def engine_unit(model, batch):
    """One whole evaluation through trm_fast.Engine: halt_max_steps ACT steps of every puzzle."""
    engine = trm_fast.Engine(model.eval(), batch["inputs"].shape[0])

    def unit():
        engine.solve(batch["inputs"], batch["puzzle_identifiers"], halting="all")
    return unit


def unit_for(model, head, backend: str, train: bool, batch):
    """The unit a row times: one training step, or one whole evaluation."""
    if train:
        return train_unit(model, head, callable_for(head, backend), batch)
    if backend == "engine":
        return engine_unit(model, batch)
    return infer_unit(model, head, callable_for(head, backend), batch)


def check(modes, backends, batches, device):
    """Raise ValueError naming the first bad mode, backend or batch size."""
    for m in modes:
        if m not in ("train", "infer"):
            raise ValueError(f"unknown mode {m!r}; choose 'train' or 'infer'")
    for b in backends:
        why = unavailable(b, device)
        if why:
            raise BackendUnavailable(why)
    for n in batches:
        if n < 1:
            raise ValueError(f"batch sizes must be >= 1, got {n}")


def run(bc: BenchConfig, modes, backends, batches, device, commit: str = "unknown", warmup: int = 3,
        reps_train: int = 10, reps_infer: int = 5, log=print, on_row=None):
    """Benchmark `bc` for every (batch, mode, backend) on the same weights and inputs; return the rows.
    reference-graphs is measured for infer at batch <= 64 only; a backend that fails gets an error row.
    `log` takes progress lines; `on_row` each row as soon as it is measured (to save it at once)."""
    device = torch.device(device)
    check(modes, backends, batches, device)
    rows = []
    for batch in batches:
        torch.manual_seed(0)
        ref_model = bc.build(batch, "reference")
        cfg, is_hrm = ref_model.config, isinstance(ref_model, trm_fast.HRM)
        n_params = sum(p.numel() for p in ref_model.parameters())
        state_dict = ref_model.state_dict()
        del ref_model
        inputs = make_batch(cfg, batch, device)
        if device.type == "cuda":
            log(f"{bc.name} batch {batch}: measuring the ceilings (cuBLAS at the model's GEMM shapes, copy bandwidth)")
        ceil = ceilings.measure(cfg, batch, device, backward="train" in modes) if device.type == "cuda" else None
        for mode in modes:
            train = mode == "train"
            steps = 1 if train else cfg.halt_max_steps
            learns_q = ref_learns_q(cfg, is_hrm)
            forward_flops, backward_flops = (steps * f for f in step_flops_split(cfg, is_hrm, batch, train, learns_q))
            flops = forward_flops + backward_flops
            floor_ms = _floor_ms(cfg, batch, forward_flops, backward_flops, ceil) if ceil else None
            nbytes = steps * step_bytes(cfg, is_hrm, batch, train, learns_q, n_params)
            for backend in backends:
                if backend == "reference-graphs" and (train or batch > GRAPHS_MAX_BATCH):
                    continue
                row = dict(config=bc.name, mode=mode, backend=backend, batch=batch, seq=cfg.full_seq_len,
                           steps=steps)
                if bc.recompute and backend == "engine" and train:
                    row["recompute"] = bc.recompute
                log(f"{bc.name} {mode} batch {batch} {backend}: warming up and timing")
                try:
                    row.update(_measure(bc, batch, backend, state_dict, device, inputs, train, warmup,
                                        reps_train if train else reps_infer))
                except Exception as err:  # a failing backend is reported, not hidden
                    row["error"] = f"{type(err).__name__}: {str(err)[:500]}"
                row.update(_rates(row, flops, nbytes, batch, train, floor_ms, ceil))
                row.update(_provenance(device, commit))
                if ceil:
                    row["ceilings"] = ceil
                if backend in NOTES:
                    row["note"] = NOTES[backend][mode]
                rows.append(row)
                log("  " + row_line(row))
                if on_row:
                    on_row(row)
                torch._dynamo.reset()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def _floor_ms(cfg, batch, forward_flops, backward_flops, ceil) -> float:
    """The row's FLOPs at the rates of one block application's forward and backward measured in this run."""
    ms = forward_flops / (batch * layer_flops(cfg)) * ceil["layer_floor_ms"]
    if backward_flops:
        ms += backward_flops / (batch * layer_flops(cfg, backward=True)) * ceil["layer_backward_floor_ms"]
    return ms


def _rates(row, flops, nbytes, batch, train, floor_ms, ceil):
    """Throughput of a row and, with ceilings, each figure as a fraction of what the hardware does."""
    out = dict(gflop=flops / 1e9, gbyte=nbytes / 1e9, floor_ms=floor_ms, tflops=None, tb_per_s=None,
               puzzles_per_s=None, samples_per_s=None, compute_frac=None, bandwidth_frac=None)
    if "ms" not in row:
        return out
    seconds = row["ms"] * 1e-3
    out.update(tflops=flops / seconds / 1e12, tb_per_s=nbytes / seconds / 1e12)
    out["samples_per_s" if train else "puzzles_per_s"] = batch / seconds
    if ceil:
        out["compute_frac"] = floor_ms / row["ms"]  # achieved / ceiling FLOP rate at these shapes
        out["bandwidth_frac"] = out["tb_per_s"] / ceil["copy_tb_per_s"]
    return out


def ref_learns_q(cfg, is_hrm: bool) -> bool:
    return is_hrm or not cfg.no_ACT_continue


def _measure(bc, batch, backend, state_dict, device, inputs, train, warmup, reps):
    model, head = model_and_head(bc, batch, backend, state_dict, device)
    unit = unit_for(model, head, backend, train, inputs)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    unit()  # compiles, autotunes, captures
    sync()
    first_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        unit()
    sync()
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with clocks.ClockSampler(device) as sampled:  # a GPU that slows itself reads slow with a small spread
        times = time_unit(unit, device, reps)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return dict(summary(times), ms_iqr=iqr(times), reps=reps, first_call_s=first_s, warmup_s=warmup_s,
                peak_gib=peak, **sampled.fields())


def _provenance(device, commit):
    import triton

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return dict(device=name, torch=torch.__version__, triton=triton.__version__, commit=commit,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
