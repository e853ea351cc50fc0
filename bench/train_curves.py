"""Training curves of runs that differ only in how their step runs (same config, seed and data), overlaid.

    python bench/train_curves.py LABEL=RUN_DIR LABEL=RUN_DIR ... --png curves.png --json curves.json

Reads each run's metrics.csv (trm-fast train writes it) and draws the LM loss and the training accuracy
against the step, one line per run; the JSON holds each run's final loss (the mean over its last
--last steps, since one step's loss is noisy), its steps, and each run's final loss over the first run's.
"""

import argparse
import json

import numpy as np

from trm_fast.train.logger import read_train_rows


def read(run_dir: str) -> dict:
    rows = read_train_rows(run_dir)
    if not rows:
        raise SystemExit(f"{run_dir}/metrics.csv has no steps")
    halted = [r for r in rows if int(r["count"]) > 0]  # a step where no puzzle halted has no accuracy
    return dict(step=np.array([int(r["step"]) for r in rows]), loss=np.array([float(r["lm_loss"]) for r in rows]),
                acc_step=np.array([int(r["step"]) for r in halted]),
                accuracy=np.array([float(r["accuracy"]) for r in halted]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    parser.add_argument("--png", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--last", type=int, default=20, help="steps averaged for the final loss (default 20)")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    runs = {}
    for spec in args.runs:
        label, eq, path = spec.partition("=")
        if not eq:
            raise SystemExit(f"expected LABEL=RUN_DIR, got {spec!r}")
        runs[label] = read(path)

    summary, first = {}, None
    for label, r in runs.items():
        final = float(r["loss"][-args.last:].mean())
        first = first if first is not None else final
        summary[label] = dict(steps=int(r["step"][-1]), final_lm_loss=final, last_step_lm_loss=float(r["loss"][-1]),
                              final_accuracy=float(r["accuracy"][-args.last:].mean()) if r["accuracy"].size else None,
                              final_loss_vs_first=final / first)
    with open(args.json, "w") as f:
        json.dump(dict(final_over_last_steps=args.last, runs=summary), f, indent=1)
    print(json.dumps(summary, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for label, r in runs.items():
        s = summary[label]
        ax_loss.plot(r["step"], r["loss"], lw=0.9, label=f"{label}: final {s['final_lm_loss']:.4f} "
                                                         f"({s['final_loss_vs_first']:.3f}x)")
        ax_acc.plot(r["acc_step"], r["accuracy"], lw=0.9, label=label)
    ax_loss.set(xlabel="step", ylabel="LM loss (log scale)", yscale="log",
                title=f"training loss (final: mean of the last {args.last} steps)")
    ax_acc.set(xlabel="step", ylabel="token accuracy of halted puzzles", ylim=(0, 1), title="training accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
