"""One GPU against N through torchrun, from the run directories bench/multi_gpu.sh leaves: the losses of
the first steps side by side, each run's steps/s (the trainer's own summary line) and the scaling.

    python bench/multi_gpu.py --one RUN_DIR --many RUN_DIR --processes 2 --one-log LOG --many-log LOG \\
        --steps 50 --json multi_gpu.json

Same global batch and seed in both runs, exploration off (its draws are per process), so the losses may
differ only by rounding: the JSON holds the largest relative difference over the first --steps steps.
"""

import argparse
import json
import re

from trm_fast.train.logger import read_train_rows


def losses(run_dir: str):
    return [(int(r["step"]), float(r["lm_loss"])) for r in read_train_rows(run_dir)]


def steps_per_s(log_path: str):
    """The last `training speed: X steps/s` of a log, with its peak memory when printed."""
    speed = peak = None
    with open(log_path, errors="replace") as f:
        for line in f:
            m = re.search(r"training speed: ([0-9.]+) steps/s.*?(?:peak device memory ([0-9.]+) GiB)?$", line.strip())
            if m:
                speed, peak = float(m.group(1)), m.group(2) and float(m.group(2))
    if speed is None:
        raise SystemExit(f"{log_path}: no 'training speed' line")
    return speed, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", required=True, help="run directory of the one-process run")
    parser.add_argument("--many", required=True, help="run directory of the torchrun run")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--one-log", required=True)
    parser.add_argument("--many-log", required=True)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--config", default="")
    parser.add_argument("--commit", default="")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    one, many = losses(args.one)[:args.steps], losses(args.many)[:args.steps]
    if [s for s, _ in one] != [s for s, _ in many]:
        raise SystemExit(f"the runs logged different steps: {len(one)} and {len(many)} of the first {args.steps}")
    worst = max(abs(a - b) / max(abs(a), 1e-12) for (_, a), (_, b) in zip(one, many))
    (speed_one, peak_one), (speed_many, peak_many) = steps_per_s(args.one_log), steps_per_s(args.many_log)
    report = dict(config=args.config, commit=args.commit, processes=args.processes, steps_compared=len(one),
                  max_rel_loss_difference=worst, steps_per_s_one=speed_one, steps_per_s_many=speed_many,
                  ms_per_step_one=1e3 / speed_one, ms_per_step_many=1e3 / speed_many,
                  speedup=speed_many / speed_one, scaling_efficiency=speed_many / speed_one / args.processes,
                  peak_gib_one=peak_one, peak_gib_many_rank0=peak_many,
                  losses_one=[v for _, v in one], losses_many=[v for _, v in many])
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("losses")}, indent=1))


if __name__ == "__main__":
    main()
