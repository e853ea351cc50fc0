"""Where MLP-t's token mix spends its time: the two-pass version's kernels alone and together, the one-kernel
version (the op's), and the official transposed order under torch.compile, at sudoku_mlpt's shape (97
positions, hidden 512, inner width 512), bf16, Triton's do_bench medians; each against its byte floor at the
copy rate measured in the same run. One JSON line per row.

    python bench/token_mix.py --batch 768 [--json rows.jsonl]
"""

import argparse
import json

import torch
import triton

from trm_fast.kernels import token_mix as kernels
from trm_fast.ops.token_mix import token_mix_reference

SEQ, WIDTH, INNER, EPS = 97, 512, 512, 1e-5


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=768)
    parser.add_argument("--json")
    args = parser.parse_args()
    b, bf16 = args.batch, 2
    torch.manual_seed(0)
    h = torch.randn(b, SEQ, WIDTH, device="cuda", dtype=torch.bfloat16)
    w_gu = torch.randn(2 * INNER, SEQ, device="cuda", dtype=torch.bfloat16) * SEQ**-0.5
    w_down = torch.randn(SEQ, INNER, device="cuda", dtype=torch.bfloat16) * INNER**-0.5
    a = torch.empty(b, INNER, WIDTH, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(h)
    rstd = torch.empty(b, WIDTH, device="cuda")

    def gate_up():
        kernels.gate_up_swiglu(h, w_gu, a)

    def down():
        kernels.down_add_norm(a, h, w_down, EPS, y, rstd)

    reference = torch.compile(token_mix_reference, dynamic=False)
    gate_up(), down()  # tuned, and the compiled reference built, before any timing
    torch.testing.assert_close(y, reference(h, w_gu, w_down, EPS), atol=2e-2, rtol=2e-2)
    src = torch.empty(64 * 2**20, device="cuda", dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy_tb_s = 2 * src.numel() / triton.testing.do_bench(lambda: dst.copy_(src)) / 1e9
    rows = [  # name, call, bytes the floor moves, FLOPs
        ("gate/up + SwiGLU kernel", gate_up, b * WIDTH * (SEQ + INNER) * bf16, 4 * b * WIDTH * INNER * SEQ),
        ("down + add + norm kernel", down, b * WIDTH * (INNER + 2 * SEQ) * bf16, 2 * b * WIDTH * INNER * SEQ),
        ("both (token_mix_two_pass)", lambda: kernels.token_mix_two_pass(h, w_gu, w_down, EPS),
         b * WIDTH * (3 * SEQ + 2 * INNER) * bf16, 6 * b * WIDTH * INNER * SEQ),
        ("one kernel (trm_fast.kernels.token_mix)", lambda: kernels.token_mix(h, w_gu, w_down, EPS),
         2 * b * WIDTH * SEQ * bf16, 6 * b * WIDTH * INNER * SEQ),
        ("official order, torch.compile", lambda: reference(h, w_gu, w_down, EPS),
         b * WIDTH * (3 * SEQ + 2 * INNER) * bf16, 6 * b * WIDTH * INNER * SEQ),
    ]
    for name, call, nbytes, flops in rows:
        us = triton.testing.do_bench(call) * 1e3
        row = dict(case=name, batch=b, us=round(us, 1), floor_us=round(nbytes / copy_tb_s / 1e6, 1),
                   tflops=round(flops / us / 1e6, 1), tb_per_s=round(nbytes / us / 1e6, 2),
                   copy_tb_per_s=round(copy_tb_s, 2), device=torch.cuda.get_device_name())
        print(json.dumps(row))
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
