"""One attention layer at a few puzzles: trm_fast's persistent kernel (kernels/small_layer.py), the same as six
launches, and the official layer under torch.compile, at sudoku_attn's shape (97 positions, hidden 512, 8 heads,
inner width 1536), bf16. Each is replayed 50 times back to back from a CUDA graph, as the engine replays its
steps (trm_fast.bench.ceilings.per_call_ms), checked against the official layer first. Two floors beside them:
what back-to-back library calls can do, cuBLAS's GEMMs and SDPA at the layer's shapes timed the same way (a
persistent kernel may go below it: it is no hardware bound), and the bench's latency model, the layer's weights
read once from L2 or its FLOPs at the rates of a batch that fills the GPU (trm_fast.bench.ceilings; no row can
go below it). One JSON line per row.

    python bench/small_layer.py --batch 1,8 [--json rows.jsonl]
    python bench/small_layer.py --batch 1,8 --sweep [--no-phases] [--json rows.jsonl]
    ncu --profile-from-start off --set detailed python bench/small_layer.py --batch 1 --ncu

--sweep times the kernel under each of SWEEP's configs (any of `launches`' keys: tiles, phase E's K split, warps,
stages, or none of the work, which leaves the launches and the barriers alone): each phase alone as its own launch,
their sum, and the persistent launch, one row per config. --ncu runs each phase alone once, the
persistent launch once and the official compiled layer once, after a warm-up, between cudaProfilerStart and
cudaProfilerStop, so that Nsight Compute profiles those launches and nothing of the set-up.
"""

import argparse

import torch

from trm_fast.bench import ceilings, configs
from trm_fast.bench.report import emit
from trm_fast.kernels import small_layer as kernel
from trm_fast.models.layers import RotaryEmbedding
from trm_fast.ops.small_layer import small_layer_reference

SEQ, WIDTH, HEADS, INNER, EPS = 97, 512, 8, 1536, 1e-5
# The likeliest first (a sweep cut short by its step's time limit keeps the rows it wrote): as it runs; the GEMM
# phases' tiles by TMA (the pointer form's K loop puts a proxy fence, MEMBAR.ALL.CTA, before every wgmma group: 16 in
# a phase-D tile, one in the TMA form's phase D; bench/NOTES.md); 8 warps, pointer and TMA (under Nsight Compute phase
# D's one warp per scheduler issued an instruction every 5.8 cycles); two programs an SM, by TMA (whose phases need
# fewer registers) with 32-query attention units (80 KiB of shared memory, not 128) and 32- or 16-column tiles in C
# and D (96 or 192 tiles in D: only the second has more tiles than SMs, the first is its control); phase F over four
# rows a program (25 programs: the default until it timed slower than one row's 97); 32-query attention units (32 in
# phase B, not 16); 8 warps with 32-column tiles in C and D; 128-row tiles, which read each weight once at batch 1
# where 64-row tiles read it twice, at 8 warps for their accumulators; the launches and barriers alone
SWEEP = [{}, {"TMA": True}, {"num_warps": 8}, {"TMA": True, "num_warps": 8},
         {"TMA": True, "BQ": 32, "BN": 32, "PER_SM": 2}, {"TMA": True, "BQ": 32, "BN": 16, "PER_SM": 2}, {"BR": 4},
         {"BQ": 32}, {"num_warps": 8, "BN": 32}, {"num_warps": 8, "BM": 128}, {"num_warps": 8, "BM": 128, "BN": 32},
         {"WORK": False}]
# earlier sweeps timed the tiles, the split, warps and stages, and the barrier's waits (bench/NOTES.md)


def us_per_call(call, device) -> float:
    return round(ceilings.per_call_ms(call, device, reps=5) * 1e3, 2)


def against_reference(batch: int, weights, tables, device):
    """Each form of the kernel and the compiled official layer, checked, then timed."""
    h = layer_input(batch, device)
    reference = torch.compile(small_layer_reference, dynamic=False)
    rows = {"trm_fast.kernels.small_layer, persistent": lambda: kernel.small_layer(
                h, *weights, *tables, HEADS, EPS, persistent=True),
            "trm_fast.kernels.small_layer, six launches": lambda: kernel.small_layer(
                h, *weights, *tables, HEADS, EPS, persistent=False),
            "official layer, torch.compile": lambda: reference(h, *weights, *tables, HEADS, EPS)}
    want = rows["official layer, torch.compile"]()
    for name, call in rows.items():  # compiled, and checked, before any timing
        torch.testing.assert_close(call(), want, atol=5e-2, rtol=5e-2, msg=lambda m: f"{name}: {m}")
    # the bench's floors of one layer application at this batch (sudoku_attn's shape, the one here)
    floors = ceilings.measure(configs.load("sudoku_attn").build(1, "reference").config, batch, device)
    for name, call in rows.items():
        yield dict(case=name, batch=batch, us=us_per_call(call, device),
                   library_floor_us=round(floors["layer_library_floor_ms"] * 1e3, 2),
                   latency_floor_us=round(floors["layer_latency_floor_ms"] * 1e3, 2))


def sweep(batch: int, weights, tables, device, phases: bool = True):
    """Per config: each phase launched alone (unless not `phases`), and the persistent launch, on the same buffers,
    checked first."""
    h = layer_input(batch, device)
    want = small_layer_reference(h, *weights, *tables, HEADS, EPS)
    for config in SWEEP:
        try:
            yield sweep_row(batch, config, weights, tables, h, want, phases)
        except Exception as err:  # one config that fails to compile or to match leaves the others' rows
            yield dict(case="small_layer sweep", batch=batch, config=config, error=f"{type(err).__name__}: {err}")


def sweep_row(batch: int, config: dict, weights, tables, h, want, phases: bool = True) -> dict:
    """One config's row: its phases alone (where `phases`) and its persistent launch, each checked before it is
    timed."""
    device = h.device
    out, args, meta, tiles, slots = kernel.launches(h, *weights, *tables, HEADS, EPS, config)
    row = dict(case="small_layer sweep", batch=batch, config=config, split=meta["SPLIT"], tiles=tiles)
    launch = lambda phase, grid: kernel._small_layer_kernel[(grid,)](*args, PHASE=phase, **meta)  # noqa: E731
    checked = config.get("WORK", True)  # without the work, the output is garbage
    for phase, count in enumerate(tiles if phases else []):
        launch(phase, count)
    if checked and phases:
        torch.testing.assert_close(out, want, atol=6e-2, rtol=6e-2, msg=lambda m: f"{config} six launches: {m}")
    for phase, count in enumerate(tiles if phases else []):
        row[f"phase{'ABCDEF'[phase]}_us"] = us_per_call(lambda: launch(phase, count), device)
    if phases:
        row["phases_sum_us"] = round(sum(row[f"phase{p}_us"] for p in "ABCDEF"), 2)
    grid = row["grid"] = min(max(tiles), slots)
    out.zero_()
    launch(-1, grid)
    if checked:
        torch.testing.assert_close(out, want, atol=6e-2, rtol=6e-2, msg=lambda m: f"{config} persistent: {m}")
    row["persistent_us"] = us_per_call(lambda: launch(-1, grid), device)
    return row


def profiled(batch: int, weights, tables, device):
    """Each phase alone, the persistent launch and the official layer compiled, once each inside the profiler's
    range; nothing is timed here (Nsight Compute's report is the result)."""
    h = layer_input(batch, device)
    out, args, meta, tiles, slots = kernel.launches(h, *weights, *tables, HEADS, EPS)
    reference = torch.compile(small_layer_reference, dynamic=False)
    calls = [lambda phase=phase, count=count: kernel._small_layer_kernel[(count,)](*args, PHASE=phase, **meta)
             for phase, count in enumerate(tiles)]
    calls.append(lambda: kernel._small_layer_kernel[(min(max(tiles), slots),)](*args, PHASE=-1, **meta))
    calls.append(lambda: reference(h, *weights, *tables, HEADS, EPS))
    for call in calls:  # compiled, and the caches warm, before the range
        call()
    torch.cuda.synchronize()
    cudart = torch.cuda.cudart()
    cudart.cudaProfilerStart()
    for call in calls:
        call()
    torch.cuda.synchronize()
    cudart.cudaProfilerStop()
    yield dict(case="small_layer ncu", batch=batch, tiles=tiles, meta={k: v for k, v in meta.items()
                                                                        if isinstance(v, (int, str))})


def layer_input(batch: int, device) -> torch.Tensor:
    h = torch.randn(batch, SEQ, WIDTH, device=device)
    return (h * torch.rsqrt(h.square().mean(-1, keepdim=True) + EPS)).to(torch.bfloat16)  # a norm's output


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", default="1,8", help="comma list of batch sizes")
    parser.add_argument("--sweep", action="store_true", help="the kernel's phases under each config of SWEEP")
    parser.add_argument("--no-phases", action="store_true",
                        help="with --sweep, the persistent launch alone (one compile a config, not seven)")
    parser.add_argument("--ncu", action="store_true", help="each phase once, for Nsight Compute (no timing)")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.manual_seed(0)
    weights = [(torch.randn(n, k, device=device) * k**-0.5).to(torch.bfloat16)
               for n, k in ((3 * WIDTH, WIDTH), (WIDTH, WIDTH), (2 * INNER, WIDTH), (WIDTH, INNER))]
    tables = tuple(t.to(device) for t in RotaryEmbedding(WIDTH // HEADS, SEQ, 10000.0)())
    for batch in map(int, args.batch.split(",")):
        rows = (lambda *a: sweep(*a, phases=not args.no_phases)) if args.sweep else profiled if args.ncu \
            else against_reference
        for row in rows(batch, weights, tables, device):
            row["device"] = torch.cuda.get_device_name()
            emit(row, args.json)


if __name__ == "__main__":
    main()
