"""Every tile config of the fused MLP backward (kernels/down_swiglu_backward.py) timed alone, beside the pair it
replaces (cuBLAS's dh = dy W, then SwiGLU's backward kernel), at sudoku_attn's batch 768 in bf16 (M = 74,496, K 512,
I 1536): which tiles and load forms the autotuner should be offered. Each config is checked against the pair first
(bf16 rounding apart); a config that cannot launch here (shared memory) is reported and skipped.

    python bench/down_swiglu_sweep.py --json sweep.jsonl                 # on a GPU, trm_fast installed: its configs
    python bench/down_swiglu_sweep.py --cross --json sweep.jsonl         # TILES below, each in both load forms
    python bench/down_swiglu_sweep.py --rows 175872 --json sweep.jsonl   # another M (arc_attn's batch 192)
"""

import argparse
import itertools
import json

import torch
import triton

# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages, programs per SM), crossed with LOAD 0 and 1 (--cross)
TILES = [(128, 128, 64, 8, 2, 1), (128, 128, 64, 8, 3, 1), (128, 64, 64, 4, 3, 2), (128, 64, 64, 8, 3, 2),
         (128, 64, 128, 8, 2, 2), (64, 128, 64, 4, 3, 2), (64, 64, 64, 4, 3, 2), (64, 64, 64, 4, 3, 3)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=768 * 97, help="M, the rows (batch x positions)")
    parser.add_argument("--cross", action="store_true", help="TILES in both load forms, not the kernel's configs")
    parser.add_argument("--json", help="append one line per config here")
    parser.add_argument("--commit", default="")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench/down_swiglu_sweep.py needs a CUDA device; none is visible")
    from trm_fast.kernels import down_swiglu_backward as dsb
    from trm_fast.ops.swiglu_linear import down_swiglu_grads

    torch.manual_seed(0)
    m, k, inner = args.rows, 512, 1536
    dy = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(k, inner, device="cuda", dtype=torch.bfloat16) * k**-0.5
    gate_up = torch.randn(m, 2 * inner, device="cuda", dtype=torch.bfloat16)
    want = torch.cat(down_swiglu_grads(dy, w, gate_up, False), dim=-1)
    device = torch.cuda.get_device_name()
    pair_us = 1e3 * triton.testing.do_bench(lambda: down_swiglu_grads(dy, w, gate_up, False), warmup=25, rep=200)
    rows = [dict(form="pair: cuBLAS + swiglu_bwd", us=pair_us)]
    kernel = dsb._down_swiglu_backward_kernel
    every = kernel.configs
    tiles = [(*t, load) for t, load in itertools.product(TILES, (0, 1))] if args.cross else dsb._tiles()
    try:
        for config in dsb.configs(tiles):
            kernel.configs, kernel.cache = [config], {}
            form = " ".join(f"{key}={value}" for key, value in config.kwargs.items()) + \
                f" warps={config.num_warps} stages={config.num_stages}"
            try:
                got = torch.cat(dsb.down_swiglu_backward(dy, w, gate_up), dim=-1)
                torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
                us = 1e3 * triton.testing.do_bench(lambda: dsb.down_swiglu_backward(dy, w, gate_up), warmup=25,
                                                   rep=200)
            except Exception as error:  # noqa: BLE001 (a config that cannot launch or is wrong: say so, go on)
                why = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}"
                rows.append(dict(form=form, us=None, error=why))
                print(f"{form}: {rows[-1]['error']}", flush=True)
                continue
            rows.append(dict(form=form, us=us))
            print(f"{form}: {us:.1f} us", flush=True)
    finally:
        kernel.configs, kernel.cache = every, {}
    print(f"\n{device}, M {m}, K {k}, I {inner}, bf16 (do_bench medians):")
    for row in sorted(rows, key=lambda r: r["us"] if r["us"] is not None else float("inf")):
        print(f"  {row['us'] if row['us'] is None else round(row['us'], 1)!s:>8} us  {row['form']}")
    if args.json:
        with open(args.json, "a") as f:
            for row in rows:
                f.write(json.dumps(dict(row, rows=m, k=k, inner=inner, device=device, commit=args.commit)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
