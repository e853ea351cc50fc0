"""Count torch.compile graph breaks in one ACT step of a bench config, per backend, and say why.

    python bench/explain_graph_breaks.py sudoku_attn 1 fused reference

A graph break costs a return to Python per step: negligible at batch 768, most of the time at batch 1.
"""

import sys

import torch

import trm_fast
from trm_fast.bench import configs
from trm_fast.bench.harness import make_batch

name, batch, backends = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
bc = configs.load(name)
for backend in backends:
    with torch.device("cuda"):
        model = bc.build(batch, backend).eval()
    head = trm_fast.ACTLossHead(model, bc.loss_type)
    data = make_batch(model.config, batch, "cuda")
    with torch.inference_mode():
        carry = head.initial_carry(data)
        report = torch._dynamo.explain(head)(return_keys=["preds"], carry=carry, batch=data)
    print(f"{name} b={batch} {backend}: {report.graph_count} graphs, {report.graph_break_count} breaks")
    for reason in {str(r.reason).splitlines()[0] for r in report.break_reasons}:
        print("   ", reason[:300])
    torch._dynamo.reset()
