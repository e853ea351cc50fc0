"""The table `trm-fast eval` prints."""


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
