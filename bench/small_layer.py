"""One attention layer at a few puzzles: trm_fast's persistent kernel (kernels/small_layer.py), the same as six
launches, and the official layer under torch.compile, at sudoku_attn's shape (97 positions, hidden 512, 8 heads,
inner width 1536), bf16. Each is replayed 50 times back to back from a CUDA graph, as the engine replays its
steps (trm_fast.bench.ceilings.per_call_ms), checked against the compiled reference first. The floor beside them
is what back-to-back library calls can do: cuBLAS's GEMMs and SDPA at the layer's shapes, timed the same way
(a persistent kernel may go below it: it is no hardware bound). One JSON line per row.

    python bench/small_layer.py --batch 1,8 [--json rows.jsonl]
"""

import argparse
import json

import torch

from trm_fast.bench import ceilings
from trm_fast.models.layers import RotaryEmbedding
from trm_fast.kernels.small_layer import small_layer
from trm_fast.ops.small_layer import small_layer_reference

SEQ, WIDTH, HEADS, INNER, EPS = 97, 512, 8, 1536, 1e-5


def library_floor_us(batch: int, device) -> float:
    """The layer's four GEMMs at cuBLAS's graph-replayed rate, plus SDPA at its shape."""
    m = batch * SEQ
    us = sum(2 * m * k * n / ceilings.measure_gemm(m, k, n, device) / 1e6
             for k, n in ((WIDTH, 3 * WIDTH), (WIDTH, WIDTH), (WIDTH, 2 * INNER), (INNER, WIDTH)))
    flops = 4 * batch * HEADS * SEQ * SEQ * (WIDTH // HEADS)
    return us + flops / ceilings.measure_attention(batch, HEADS, SEQ, WIDTH // HEADS, device) / 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", default="1,8", help="comma list of batch sizes")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.manual_seed(0)
    weights = [(torch.randn(n, k, device=device) * k**-0.5).to(torch.bfloat16)
               for n, k in ((3 * WIDTH, WIDTH), (WIDTH, WIDTH), (2 * INNER, WIDTH), (WIDTH, INNER))]
    tables = tuple(t.to(device) for t in RotaryEmbedding(WIDTH // HEADS, SEQ, 10000.0)())
    reference = torch.compile(small_layer_reference, dynamic=False)
    for batch in map(int, args.batch.split(",")):
        h = torch.randn(batch, SEQ, WIDTH, device=device)
        h = (h * torch.rsqrt(h.square().mean(-1, keepdim=True) + EPS)).to(torch.bfloat16)
        rows = {"trm_fast.kernels.small_layer, persistent": lambda: small_layer(
                    h, *weights, *tables, HEADS, EPS, persistent=True),
                "trm_fast.kernels.small_layer, six launches": lambda: small_layer(
                    h, *weights, *tables, HEADS, EPS, persistent=False),
                "official layer, torch.compile": lambda: reference(h, *weights, *tables, HEADS, EPS)}
        want = rows["official layer, torch.compile"]()
        for name, call in rows.items():  # compiled, and checked, before any timing
            torch.testing.assert_close(call(), want, atol=5e-2, rtol=5e-2, msg=lambda m: f"{name}: {m}")
        floor = library_floor_us(batch, device)
        for name, call in rows.items():
            us = ceilings.per_call_ms(call, device, reps=5) * 1e3
            row = dict(case=name, batch=batch, us=round(us, 2), library_floor_us=round(floor, 2),
                       device=torch.cuda.get_device_name())
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
