"""Early exit on a trained model: the engine with halting="all" (every puzzle runs halt_max_steps steps,
the official evaluation) against halting="q" (each stops at its Q head's decision and its row takes the
next puzzle), on the same held-out puzzles, at the same batch size, in one process.

    python bench/early_exit.py MODEL DATA_DIR --batch 768,1 --json rows.jsonl --png early_exit.png
    python bench/early_exit.py - - --json rows.jsonl --png early_exit.png --replot   # draw committed rows again

MODEL: any checkpoint `trm-fast eval` takes (the shipped solver: trm_fast/pretrained/sudoku.safetensors).
A halt threshold above 0 makes the model think longer; `--tune` picks the smallest of THRESHOLDS whose
exact accuracy on `--tune-puzzles` puzzles of the *training* split is within `--tune-tolerance` of
halting="all" there (the held-out puzzles never choose it), and adds rows with it.
Each row: config, halting, halt_threshold, batch, puzzles, exact_accuracy, token_accuracy, mean_steps,
steps_histogram, exact_by_step (halting "all": after each step; "q": of the puzzles that stopped there),
narrow_tail (the last puzzles of halting "q" finished on 1/16 of the rows), puzzles_per_s, ms_per_puzzle
(wall time of one solve of all the puzzles over their number, after a warm-up solve of the same puzzles, so
compile, capture and the queue's allocation are not in it), device, commit.
"""

import argparse
import json
import os
import time

import numpy as np
import torch

import trm_fast
from trm_fast.bench.report import emit
from trm_fast.data.dataset import PuzzleSplit
from trm_fast.evaluate.checkpoint import default_device, load_model

THRESHOLDS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


def _puzzles(data_dir: str, split: str, count: int):
    data = PuzzleSplit([data_dir], split)
    name, puzzle_set = next(iter(data.sets.items()))
    rows = np.arange(min(count, puzzle_set.inputs.shape[0]))
    return data.metadata, data.collate(name, rows)


def _solve(engine, batch, halting, threshold):
    device = engine.device
    inputs, ids, labels = (batch[k].to(device) for k in ("inputs", "puzzle_identifiers", "labels"))
    # warm-up on the same puzzles: compiles, sizes the queue for them and captures the graphs for it
    engine.solve(inputs, ids, halting, labels=labels, halt_threshold=threshold)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    sol = engine.solve(inputs, ids, halting, labels=labels, halt_threshold=threshold)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    labelled = (labels != -100).sum(-1)
    right = (sol.preds == labels) | (labels == -100)
    return sol, seconds, right.all(-1), (right.sum(-1) - (labels == -100).sum(-1)) / labelled.clamp(min=1)


def measure(engine, batch, halting, threshold, max_steps):
    sol, seconds, exact, token = _solve(engine, batch, halting, threshold)
    n = exact.shape[0]
    steps = sol.steps.long().cpu()
    histogram = torch.bincount(steps - 1, minlength=max_steps).tolist()
    if halting == "all":  # exact after each step, from the right tokens counted after every step
        labelled = (batch["labels"] != -100).sum(-1).to(sol.correct_tokens.device)
        by_step = (sol.correct_tokens == labelled[:, None]).float().mean(0).tolist()
    else:
        exact_cpu = exact.float().cpu()
        by_step = [float(exact_cpu[steps == s + 1].mean()) if histogram[s] else None for s in range(max_steps)]
    return dict(halting=halting, halt_threshold=threshold, batch=engine.batch_size, puzzles=n,
                exact_accuracy=float(exact.float().mean()), token_accuracy=float(token.float().mean()),
                mean_steps=float(steps.float().mean()), steps_histogram=histogram, exact_by_step=by_step,
                puzzles_per_s=n / seconds, ms_per_puzzle=1e3 * seconds / n)


def tune(engine, batch, max_steps, tolerance):
    """The smallest threshold whose exact accuracy is within `tolerance` of halting="all" on these puzzles."""
    reference = measure(engine, batch, "all", 0.0, max_steps)["exact_accuracy"]
    tried = []
    for threshold in THRESHOLDS:
        acc = measure(engine, batch, "q", threshold, max_steps)["exact_accuracy"]
        tried.append((threshold, acc))
        if acc >= reference - tolerance:
            return threshold, reference, tried
    return THRESHOLDS[-1], reference, tried


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = max(r["batch"] for r in rows)
    shown = [r for r in rows if r["batch"] == batch]
    fig, (ax_hist, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.2))
    steps = np.arange(1, len(shown[0]["steps_histogram"]) + 1)
    width = 0.8 / len(shown)
    for k, r in enumerate(shown):
        label = f"halting {r['halting']}" + (f" (threshold {r['halt_threshold']:g})" if r["halting"] == "q" else "") \
            + (", narrow tail" if r.get("narrow_tail") else "")
        share = np.array(r["steps_histogram"]) / r["puzzles"]
        ax_hist.bar(steps + (k - (len(shown) - 1) / 2) * width, share, width,
                    label=f"{label}: mean {r['mean_steps']:.2f} steps, {r['puzzles_per_s']:,.0f} puzzles/s")
        by_step = [np.nan if v is None else v for v in r["exact_by_step"]]
        what = "exact after each step" if r["halting"] == "all" else "exact, puzzles that stopped at the step"
        ax_acc.plot(steps, by_step, marker="o", label=f"{label}: {what} (overall {r['exact_accuracy']:.2%})")
    ax_hist.set(xlabel="ACT steps taken", ylabel="share of puzzles (log scale: the few late ones show)", xticks=steps,
                yscale="log",
                title=f"steps taken, batch {batch}, {shown[0]['puzzles']} held-out puzzles")
    ax_acc.set(xlabel="ACT step", ylabel="exact accuracy", xticks=steps, ylim=(0, 1.02), title="accuracy by step")
    for ax in (ax_hist, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--config-name", default="sudoku_solver", help="the rows' config field")
    parser.add_argument("--batch", default="768,1", help="batch sizes, comma-separated (default 768,1)")
    parser.add_argument("--puzzles", type=int, default=100_000, help="held-out puzzles, at most (default: all)")
    parser.add_argument("--batch1-puzzles", type=int, default=200, help="puzzles for the batch-1 rows (default 200)")
    parser.add_argument("--tune", action="store_true", help="also choose a threshold on training puzzles")
    parser.add_argument("--threshold", type=float, help="also rows with this threshold (one tuned before)")
    parser.add_argument("--tune-puzzles", type=int, default=4000)
    parser.add_argument("--tune-tolerance", type=float, default=0.002)
    parser.add_argument("--narrow-tail", action="store_true",
                        help="also the halting q rows with the last puzzles finished on fewer rows "
                             "(Engine(narrow_tail=True)), in the same process")
    parser.add_argument("--commit", default="")
    parser.add_argument("--json", required=True)
    parser.add_argument("--png")
    parser.add_argument("--replot", action="store_true", help="only draw --png from the rows in --json")
    args = parser.parse_args()
    if args.replot:
        with open(args.json) as f:
            plot([json.loads(line) for line in f], args.png)
        return

    device = default_device()
    meta, held_out = _puzzles(args.data, "test", args.puzzles)
    name = os.path.join(args.data, "test", "dataset.json")
    batches = [int(b) for b in args.batch.split(",")]
    rows, thresholds, tuned = [], [0.0] + ([args.threshold] if args.threshold else []), not args.tune
    common = dict(config=args.config_name, device=torch.cuda.get_device_name(device) if device.type == "cuda"
                  else "cpu", commit=args.commit)
    for batch_size in batches:
        model, _, _ = load_model(args.model, meta, name, batch_size=batch_size, device=device)
        engine = trm_fast.Engine(model, batch_size, narrow_tail=False)
        max_steps = model.config.halt_max_steps
        if not tuned:
            tuned = True
            _, train = _puzzles(args.data, "train", args.tune_puzzles)
            chosen, reference, tried = tune(engine, train, max_steps, args.tune_tolerance)
            print(f"tuned on {train['inputs'].shape[0]} training puzzles: threshold {chosen:g} (exact with halting "
                  f"all {reference:.4f}; tried {tried})")
            if chosen != 0.0:
                thresholds.append(chosen)
        part = held_out if batch_size > 1 else {k: v[:args.batch1_puzzles] for k, v in held_out.items()}
        runs = [(engine, "all", 0.0)] + [(engine, "q", t) for t in thresholds]
        if args.narrow_tail:
            narrow = trm_fast.Engine(model, batch_size, narrow_tail=True)
            runs += [(narrow, "q", t) for t in thresholds]
        for run_engine, halting, threshold in runs:
            row = {**common, "narrow_tail": run_engine.narrow_tail,
                   **measure(run_engine, part, halting, threshold, max_steps)}
            rows.append(row)
            emit(row, args.json, shown={k: v for k, v in row.items() if k not in ("steps_histogram", "exact_by_step")})
    if args.png:
        plot(rows, args.png)


if __name__ == "__main__":
    main()
