"""The table `trm-fast eval` prints, and its plot (`--png`): per set, the halting steps and the accuracy by step."""

from ..disk import atomic_file


def format_report(result: dict) -> str:
    steps = result["halt_max_steps"]
    lines = [f"checkpoint {result['checkpoint']}" + (" (EMA weights)" if result["ema_weights"] else ""),
             f"data       {result['data']} ({result['split']} split)", ""]
    header = (f"{'set':<10} {'examples':>9} {'exact':>8} {'token':>8} {'q_halt':>8} {'lm_loss':>9} "
              f"{'halt step':>9} {'exact@halt':>10}")
    lines += [header, "-" * len(header)]
    for name, m in result["sets"].items():
        h = m["halting"]
        lines.append(f"{name:<10} {m['count']:>9} {m['exact_accuracy']:>8.4f} {m['accuracy']:>8.4f} "
                     f"{m['q_halt_accuracy']:>8.4f} {m['lm_loss']:>9.4f} {h['mean_halt_step']:>9.2f} "
                     f"{h['exact_accuracy_at_halt']:>10.4f}")
    if result.get("halting", "all") == "all":
        lines += [f"halting all: every example ran {steps} steps; exact, token, q_halt: accuracies after step "
                  f"{steps}; halt step: mean step at which the model would stop on its own; exact@halt: exact "
                  "accuracy of the predictions there"]
    else:
        lines += [f"halting q: each example stopped at the first step at which the model said halt (at most "
                  f"{steps}); exact, token, q_halt: accuracies there; halt step: mean steps taken"]
    if result.get("halt_threshold"):
        lines += [f"the model says halt where Q-halt exceeds {result['halt_threshold']:g} (the halt threshold)"]
    if "seconds" in result:
        total = sum(m["count"] for m in result["sets"].values())
        lines += [f"{total} examples in {result['seconds']:.2f} s on {result['device']}: "
                  f"{result['examples_per_s']:,.1f} per s" + (" (compiling the step included)" if result["compiled"]
                                                              else "")]
    for name, m in result["sets"].items():
        h, count = m["halting"], max(m["count"], 1)
        by_step = h.get("exact_accuracy_by_step")
        lines += ["", f"set {name}: halting step (first step with Q-halt on)"
                  + (" and exact accuracy after each step" if by_step else ""),
                  f"{'step':>6} {'halts':>9} {'share':>7}" + (f" {'exact':>8}" if by_step else "")]
        for s, n in enumerate(h["histogram"], start=1):
            lines.append(f"{s:>6} {n:>9} {n / count:>7.1%}" + (f" {by_step[s - 1]:>8.4f}" if by_step else ""))
    if "ARC" in result:
        scores = "  ".join(f"{k[4:]} {v:.4f}" for k, v in result["ARC"].items())
        lines += ["", f"ARC (votes over augmentations): {scores}"]
    return "\n".join(lines)


def plot_report(result: dict, path: str):
    """One row per set: the share of examples halting (or, with halting q, stopping) at each step, on a log
    scale so that the few late ones show, and with halting all the exact accuracy after each step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets, steps = result["sets"], result["halt_max_steps"]
    policy = result.get("halting", "all")
    fig, axes = plt.subplots(len(sets), 2, figsize=(11, 3.6 * len(sets)), squeeze=False)
    for (name, m), (ax_hist, ax_acc) in zip(sets.items(), axes):
        h, count, xs = m["halting"], max(m["count"], 1), list(range(1, steps + 1))
        ax_hist.bar(xs, [n / count for n in h["histogram"]], color="tab:blue")
        ax_hist.set(xlabel="ACT step", ylabel="share of examples (log scale)", yscale="log", xticks=xs,
                    title=f"{name}: {'stopped' if policy == 'q' else 'would halt'} at step, "
                          f"mean {h['mean_halt_step']:.2f} ({m['count']:,} examples)")
        by_step = h.get("exact_accuracy_by_step")
        if by_step:
            ax_acc.plot(xs, by_step, marker="o", label="exact accuracy after each step")
            ax_acc.axhline(h["exact_accuracy_at_halt"], color="tab:red", ls="--",
                           label=f"stopping at its own halt: {h['exact_accuracy_at_halt']:.2%}")
            ax_acc.set(ylim=(0, 1.02), title=f"{name}: exact accuracy by step")
            ax_acc.legend(fontsize=8, loc="lower right")
        else:
            ax_acc.bar(["exact", "token"], [m["exact_accuracy"], m["accuracy"]], color=["tab:red", "tab:orange"])
            ax_acc.set(ylim=(0, 1.02), title=f"{name}: accuracy where each example stopped")
        ax_acc.set(xlabel="ACT step" if by_step else "", ylabel="accuracy")
        for ax in (ax_hist, ax_acc):
            ax.grid(alpha=0.3)
    fig.suptitle(f"{result['checkpoint']}, {result['data']} ({result['split']}), halting {policy}", fontsize=9)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
