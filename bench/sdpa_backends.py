"""SDPA's kernels at the paper configs' attention shapes, forward alone and forward + backward, one backend at a
time (cuDNN, FlashAttention, memory-efficient), bf16, Triton's do_bench medians. The trainer's gradient cycle
runs whichever `torch._fused_sdp_choice` names (cuDNN's on Hopper), and its backward took 493 us a call at
sudoku_attn's batch 768 on an H200, 75 TFLOP/s (bench/results/2026-11-29_h200_c04fb92_trainer_profile.txt):
this says whether another backend's backward is faster before any kernel of our own is written. One JSON line
per row; a backend that refuses the shape is a row with its reason.

    python bench/sdpa_backends.py [--json rows.jsonl]
"""

import argparse

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from trm_fast.bench.report import emit

HEADS, HEAD_DIM = 8, 64
SHAPES = {"sudoku_attn": (768, 97), "sudoku_hrm": (768, 82), "arc_attn": (192, 916)}  # (batch, positions)
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}


def attention_flops(batch: int, seq: int) -> int:
    """Forward FLOPs: QK^T and PV, 2 B H S^2 D each. The backward is 2.5 times that (five GEMMs of that size)."""
    return 4 * batch * HEADS * seq * seq * HEAD_DIM


def time_backend(backend: SDPBackend, batch: int, seq: int) -> dict:
    """Forward and forward + backward medians in us, on inputs in the model's (B, H, S, D) view of (B, S, H, D)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, seq, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
               .requires_grad_() for _ in range(3))
    grad = torch.randn(batch, HEADS, seq, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel(backend):
        def forward():  # as the training step runs it: recorded, the logsumexp kept for the backward
            return F.scaled_dot_product_attention(q, k, v)

        def both():
            out = F.scaled_dot_product_attention(q, k, v)
            return torch.autograd.grad(out, (q, k, v), grad)

        forward_us = triton.testing.do_bench(forward) * 1e3
        both_us = triton.testing.do_bench(both) * 1e3
    flops = attention_flops(batch, seq)
    return dict(forward_us=round(forward_us, 1), backward_us=round(both_us - forward_us, 1),
                forward_tflops=round(flops / forward_us / 1e6, 1),
                backward_tflops=round(2.5 * flops / (both_us - forward_us) / 1e6, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="append the rows to this JSON-lines file")
    parser.add_argument("--configs", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    args = parser.parse_args()
    for config in args.configs:
        batch, seq = SHAPES[config]
        for name, backend in BACKENDS.items():
            row = dict(config=config, batch=batch, seq=seq, backend=name, device=torch.cuda.get_device_name())
            try:
                row.update(time_backend(backend, batch, seq))
            except RuntimeError as error:  # no kernel of this backend takes the shape: say why and go on
                row["refused"] = str(error).splitlines()[0][:200]
            emit(row, args.json)


if __name__ == "__main__":
    main()
