"""What a run reports (rank 0 only): a progress bar, per-step metrics in a CSV file and TensorBoard,
evaluation metrics, and at the end a loss/accuracy plot and the training speed (steps per second of
wall time, without the first WARMUP_STEPS steps, which compile; evaluations and checkpoint writes excluded)
with, on a GPU, the peak device memory.

Files in the run directory:
    metrics.csv        one row per training step: step, lr, then the loss head's metrics (sorted by name)
    eval_metrics.csv   one row per evaluated number: step, metric, value
    tensorboard/       the same numbers as TensorBoard scalars (train/..., eval/...)
    metrics.png        loss and accuracy against steps

CSV values are written with repr(), so they read back exactly. On resume both CSV files are cut back to
what the checkpoint had seen, and TensorBoard drops the events after the checkpoint's step.
"""

import csv
import os
import time
from typing import Dict, Optional

from tqdm import tqdm

from ..disk import reporting_full_disk

TRAIN_CSV, EVAL_CSV, PLOT = "metrics.csv", "eval_metrics.csv", "metrics.png"
WARMUP_STEPS = 10


def _rewrite_rows(path: str, keep) -> Optional[list]:
    """Keep the header and the complete rows for which keep(row_index, row) holds; rewritten atomically."""
    if not os.path.isfile(path):
        return None
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return None
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]  # a killed run may leave half a row
    kept = [r for i, r in enumerate(body) if keep(i, r)]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header] + kept)
    os.replace(tmp, path)
    return header


class RunLogger:
    def __init__(self, run_dir: str, *, total_steps: int, start_step: int = 0, evals_done: int = 0,
                 resume: bool = False):
        self.run_dir = run_dir
        train_csv, eval_csv = os.path.join(run_dir, TRAIN_CSV), os.path.join(run_dir, EVAL_CSV)
        self.columns = None
        if resume:
            self.columns = _rewrite_rows(train_csv, lambda i, r: int(r[0]) <= start_step)
            evals = set()  # keep the rows of the first `evals_done` evaluations (one step each)

            def keep_eval(i, row):
                if row[0] not in evals and len(evals) >= evals_done:
                    return False
                evals.add(row[0])
                return True
            _rewrite_rows(eval_csv, keep_eval)
        else:
            for path in (train_csv, eval_csv):
                if os.path.exists(path):
                    os.remove(path)
        self._train = open(train_csv, "a", newline="")
        self._eval = open(eval_csv, "a", newline="")
        if os.path.getsize(eval_csv) == 0:
            csv.writer(self._eval).writerow(["step", "metric", "value"])
        from torch.utils.tensorboard import SummaryWriter  # slow import, only where a run logs

        self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"), purge_step=start_step + 1 if resume else None)
        self.steps_logged = 0
        # steps timed (each from the previous step's end) after the warm-up, their wall time, and the clock
        self.timed_steps, self.train_seconds, self._last = 0, 0.0, None
        print(f"run directory: {run_dir}", flush=True)
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def step(self, step: int, metrics: Dict[str, float]):
        now = time.perf_counter()  # the metrics came back to the host: the step is done on the device
        if self._last is not None and self.steps_logged >= WARMUP_STEPS:
            self.timed_steps += 1
            self.train_seconds += now - self._last
        self._last = now
        with reporting_full_disk(self._train.name):
            if self.columns is None:
                self.columns = ["step"] + list(metrics)
                csv.writer(self._train).writerow(self.columns)
            csv.writer(self._train).writerow([step] + [repr(metrics.get(k)) for k in self.columns[1:]])
            self._train.flush()
        self.steps_logged += 1
        for k, v in metrics.items():
            self.tb.add_scalar(f"train/{k}", v, step)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{metrics['lm_loss']:.4f}", acc=f"{metrics['accuracy']:.4f}",
                             exact=f"{metrics['exact_accuracy']:.4f}", refresh=False)

    def untimed(self):
        """The time since the last step (an evaluation, a checkpoint write) is not a training step's."""
        self._last = None

    def evaluation(self, step: int, metrics: Dict[str, float]):
        self.untimed()
        with reporting_full_disk(self._eval.name):
            csv.writer(self._eval).writerows([step, k, repr(v)] for k, v in metrics.items())
            self._eval.flush()
        for k, v in metrics.items():
            self.tb.add_scalar(f"eval/{k}", v, step)
        self.bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

    def write(self, message: str):
        self.bar.write(message)

    def close(self, finished: bool = True, peak_gib: Optional[float] = None):
        """`finished`: the run is over, and the bar ends full (total_steps is the official estimate; each
        iteration drops its last, partial batch, so a run may end a few steps short of it). `peak_gib`: the
        device's peak memory, printed with the speed."""
        if finished:
            self.bar.total = self.bar.n
        self.bar.close()
        if self.timed_steps and self.train_seconds > 0:
            print(f"training speed: {self.timed_steps / self.train_seconds:.2f} steps/s ({self.timed_steps} steps "
                  f"of this process after its first {WARMUP_STEPS}, evaluations and checkpoints excluded)"
                  + (f", peak device memory {peak_gib:.2f} GiB" if peak_gib is not None else ""), flush=True)
        self.tb.close()
        self._train.close()
        self._eval.close()
        plot(self.run_dir)


def read_train_rows(run_dir: str) -> list:
    """metrics.csv's rows, one dict of strings per step (as written: repr of each value)."""
    with open(os.path.join(run_dir, TRAIN_CSV), newline="") as f:
        return list(csv.DictReader(f))


def plot(run_dir: str):
    """metrics.png: training LM loss (left), training and evaluation accuracies (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_train_rows(run_dir)
    if not rows:
        return  # nothing trained yet
    evals = {}
    if os.path.isfile(os.path.join(run_dir, EVAL_CSV)):
        with open(os.path.join(run_dir, EVAL_CSV), newline="") as f:
            for row in csv.DictReader(f):
                evals.setdefault(row["metric"], []).append((int(row["step"]), float(row["value"])))
    steps = [int(r["step"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(steps, [float(r["lm_loss"]) for r in rows], lw=0.8, label="train lm_loss")
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log", title="loss")
    halted = [r for r in rows if int(r["count"]) > 0]  # a step where no puzzle halted has no accuracy
    for key in ("accuracy", "exact_accuracy"):
        ax_acc.plot([int(r["step"]) for r in halted], [float(r[key]) for r in halted], lw=0.8, label=f"train {key}")
    for name, points in evals.items():
        if name.endswith("exact_accuracy") or "pass@" in name:
            ax_acc.plot(*zip(*points), marker="o", label=f"eval {name}")
    ax_acc.set(xlabel="step", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = os.path.join(run_dir, PLOT + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, os.path.join(run_dir, PLOT))
