"""MLP-t's token mix: trm_fast's kernel (kernels/token_mix.py) against the official transposed order under
torch.compile, at sudoku_mlpt's shape (97 positions, hidden 512, inner width 512), bf16, Triton's do_bench
medians, each against its byte floor at the copy rate measured in the same run. One JSON line per row.

    python bench/token_mix.py --batch 768 [--json rows.jsonl]
    python bench/token_mix.py --tile 64,64,4,2   # the kernel in one tile alone: BLOCK_I, BLOCK_D, warps, stages
    python bench/token_mix.py --tma [--tile ...] # the TMA kernel (kernels/token_mix._token_mix_tma_kernel)

Run each --tile in a process of its own: a tile that faults leaves the process's CUDA context unusable.
"""

import argparse

import torch
import triton

from trm_fast.bench import ceilings
from trm_fast.bench.report import emit
from trm_fast.kernels import token_mix as kernels
from trm_fast.ops.token_mix import token_mix_reference

SEQ, WIDTH, INNER, EPS = 97, 512, 512, 1e-5


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=768)
    parser.add_argument("--tile", help="BLOCK_I,BLOCK_D,warps,stages: time the kernel in this tile alone")
    parser.add_argument("--tma", action="store_true", help="the TMA kernel instead of the pointer one")
    parser.add_argument("--json")
    args = parser.parse_args()
    b, bf16 = args.batch, 2
    torch.manual_seed(0)
    h = torch.randn(b, SEQ, WIDTH, device="cuda", dtype=torch.bfloat16)
    w_gu = torch.randn(2 * INNER, SEQ, device="cuda", dtype=torch.bfloat16) * SEQ**-0.5
    w_down = torch.randn(SEQ, INNER, device="cuda", dtype=torch.bfloat16) * INNER**-0.5
    kernel = lambda: kernels.token_mix(h, w_gu, w_down, EPS, tma=args.tma)  # noqa: E731
    tuned = kernels._token_mix_tma_kernel if args.tma else kernels._token_mix_kernel
    reference = torch.compile(token_mix_reference, dynamic=False)
    want = reference(h, w_gu, w_down, EPS)
    if args.tile:
        bi, bd, warps, stages = map(int, args.tile.split(","))
        tuned.configs = [triton.Config({"BLOCK_I": bi, "BLOCK_D": bd}, num_warps=warps, num_stages=stages,
                                       pre_hook=tuned.configs[0].pre_hook)]
    torch.testing.assert_close(kernel()[0], want, atol=2e-2, rtol=2e-2)  # tuned, and checked, before any timing
    copy_tb_s = ceilings.measure_copy(h.device)  # the bench's own copy rate, the floor's bandwidth
    flops = 6 * b * WIDTH * INNER * SEQ
    name = "trm_fast.kernels.token_mix" + (" tma" if args.tma else "") + (f" tile {args.tile}" if args.tile else "")
    rows = [(name, kernel,
             2 * b * WIDTH * SEQ * bf16)]  # h read, y written
    if not args.tile:  # h transposed, the gate_up activation, the SwiGLU product and d written and read back
        rows.append(("official order, torch.compile", lambda: reference(h, w_gu, w_down, EPS),
                     b * WIDTH * (7 * SEQ + 6 * INNER) * bf16))
    for name, call, nbytes in rows:
        us = triton.testing.do_bench(call) * 1e3
        row = dict(case=name, batch=b, us=round(us, 1), floor_us=round(nbytes / copy_tb_s / 1e6, 1),
                   tflops=round(flops / us / 1e6, 1), tb_per_s=round(nbytes / us / 1e6, 2),
                   copy_tb_per_s=round(copy_tb_s, 2), device=torch.cuda.get_device_name())
        emit(row, args.json)


if __name__ == "__main__":
    main()
