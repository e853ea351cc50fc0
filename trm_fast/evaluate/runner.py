"""Evaluation through trm_fast.Engine: every test example, metrics summed over its real examples only.

Per set, averaged over the examples that have labels (count), at each example's last step:
accuracy (mean per-example token accuracy), exact_accuracy (whole puzzle right), q_halt_accuracy (Q-halt's
sign agrees with exactness), steps (ACT steps run), lm_loss and q_halt_loss (the loss head's, per example).
With `halting="all"` (the official evaluation) every example runs halt_max_steps steps and the halting
statistics say what the model would have done on its own: each example's halting step is the first step
at which it said halt (Q-halt > 0, or Q-halt > Q-continue for models that learn Q-continue), else the
last; reported as a histogram, its mean, the accuracies of the predictions at that step, and the exact
accuracy after each step. With `halting="q"` every example stops at its halting step, so those are the
steps it took and the accuracies are the reported ones.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..data.format import IGNORE_LABEL_ID
from ..models.losses import LOSS_TYPES
from .arc import ArcVotes

METRICS = ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss")
_AT_HALT = ("exact_accuracy_at_halt", "accuracy_at_halt")
CHUNK_BATCHES = 32  # puzzles handed to Engine.solve at once, in batches: continuous batching runs within it


@dataclass
class SetTotals:
    """Sums over one set's examples, on the engine's device."""
    sums: torch.Tensor  # (2 + len(METRICS) + 1,): count, the metric sums, then exact and token accuracy at halt
    halt_histogram: torch.Tensor  # (M,) examples halting at step 1..M
    exact_by_step: torch.Tensor  # (M,) examples exactly right after step 1..M

    @classmethod
    def zeros(cls, steps: int, device) -> "SetTotals":
        z = lambda n: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        return cls(z(1 + len(METRICS) + len(_AT_HALT)), z(steps), z(steps))

    def flat(self) -> torch.Tensor:
        return torch.cat([self.sums, self.halt_histogram, self.exact_by_step])


def _summarise(flat: torch.Tensor, steps: int, halting: str) -> dict:
    values = flat.tolist()
    n = 1 + len(METRICS) + len(_AT_HALT)
    count = values[0]
    per = max(count, 1.0)
    out = {"count": int(count), **{name: values[1 + i] / per for i, name in enumerate(METRICS)}}
    histogram = [int(v) for v in values[n:n + steps]]
    out["halting"] = {
        "policy": halting,
        "histogram": histogram,
        "mean_halt_step": sum((s + 1) * h for s, h in enumerate(histogram)) / per,
        **{name: values[1 + len(METRICS) + i] / per for i, name in enumerate(_AT_HALT)},
    }
    if halting == "all":
        out["halting"]["exact_accuracy_by_step"] = [v / per for v in values[n + steps:]]
    return out


@dataclass
class Evaluation:
    sets: Dict[str, dict]  # per set: the metrics above (rank 0; empty elsewhere)
    arc: Optional[dict] = None  # {"ARC/pass@K": ...} when ARC votes were collected
    submission: Optional[dict] = None
    saved_outputs: Dict[str, torch.Tensor] = field(default_factory=dict)  # this rank's eval_save_outputs

    def flat_metrics(self) -> Dict[str, float]:
        """'{set}/{metric}' numbers, the halting summary included, plus the ARC scores."""
        out = {}
        for name, metrics in self.sets.items():
            for k, v in metrics.items():
                if k == "halting":
                    out[f"{name}/mean_halt_step"] = v["mean_halt_step"]
                    out[f"{name}/exact_accuracy_at_halt"] = v["exact_accuracy_at_halt"]
                elif k != "count":
                    out[f"{name}/{k}"] = v
        out.update(self.arc or {})
        return out


def _add_chunk(t: SetTotals, solution, labels: torch.Tensor, loss_type: str, max_steps: int):
    """Add one solved chunk's examples to the set's sums."""
    mask = labels != IGNORE_LABEL_ID
    n_labels = mask.sum(-1)
    valid = n_labels > 0  # an example without labels counts nowhere
    rows = torch.arange(labels.shape[0], device=labels.device)
    correct = solution.correct_tokens  # (n, M): right tokens after each step, -1 where not run
    last = solution.steps.long() - 1
    exact = correct[rows, last] == n_labels
    token = correct[rows, last].double() / n_labels.clamp_min(1)
    halt = torch.where(solution.halt_step > 0, solution.halt_step, solution.steps).long() - 1
    q_halt = solution.q_halt_logits

    per_token = LOSS_TYPES[loss_type](solution.logits, labels, ignore_index=IGNORE_LABEL_ID, valid_mask=mask)
    lm_loss = per_token.sum(-1) / n_labels.clamp_min(1)
    q_halt_loss = F.binary_cross_entropy_with_logits(q_halt, exact.to(q_halt.dtype), reduction="none")
    v = valid.double()
    t.sums += torch.stack([
        v.sum(), (v * token).sum(), (v * exact).sum(), (v * ((q_halt >= 0) == exact)).sum(),
        (v * solution.steps).sum(), (v * lm_loss).sum(), (v * q_halt_loss).sum(),
        (v * (correct[rows, halt] == n_labels)).sum(), (v * correct[rows, halt] / n_labels.clamp_min(1)).sum()])
    t.halt_histogram += torch.bincount(halt[valid], minlength=max_steps).double()
    t.exact_by_step += ((correct == n_labels[:, None]) & valid[:, None]).sum(0).double()


def share(total: int, proc) -> Tuple[int, int]:
    """The examples [lo, hi) of a set of `total` that rank r of W evaluates: the r-th of W contiguous shares."""
    return total * proc.rank // proc.world_size, total * (proc.rank + 1) // proc.world_size


@torch.no_grad()
def evaluate(engine, split, loss_type: str, *, halting: str = "all", halt_threshold: float = 0.0, proc=None,
             arc_votes: Optional[ArcVotes] = None, save_keys: Sequence[str] = (), progress=None) -> Evaluation:
    """Solve every example of `split` (a PuzzleSplit) with `engine`; metrics summed over ranks to rank 0.
    `halt_threshold`: where the model says halt (Engine.solve), for both policies' halting statistics.

    Rank r of W takes the r-th of W contiguous shares of each set. `arc_votes` collects this rank's ARC
    votes (merge and score them with `gather_arc_votes`); `save_keys` names inputs and outputs to keep."""
    proc = proc or distributed.Process(0, 1, engine.device)
    max_steps = engine.config.halt_max_steps
    totals: Dict[str, SetTotals] = {}
    saved: Dict[str, List[torch.Tensor]] = {}
    chunk = CHUNK_BATCHES * engine.batch_size

    for name, data in split.sets.items():
        t = totals.setdefault(name, SetTotals.zeros(max_steps, engine.device))
        lo, hi = share(data.inputs.shape[0], proc)
        for start in range(lo, hi, chunk):
            examples = np.arange(start, min(hi, start + chunk))
            batch = split.collate(name, examples)
            labels = batch["labels"].to(engine.device)
            solution = engine.solve(batch["inputs"], batch["puzzle_identifiers"], halting, labels=labels,
                                    return_logits=True, halt_threshold=halt_threshold)
            _add_chunk(t, solution, labels, loss_type, max_steps)
            if arc_votes is not None:
                arc_votes.add(batch["puzzle_identifiers"].numpy(), batch["inputs"].numpy(),
                              solution.preds.cpu().numpy(), solution.q_halt_logits.cpu().numpy())
            outputs = {"preds": solution.preds, "logits": solution.logits, "q_halt_logits": solution.q_halt_logits,
                       "steps": solution.steps}
            for k in save_keys:
                source = batch if k in batch else outputs
                if k in source:
                    saved.setdefault(k, []).append(source[k].cpu())
            if progress is not None:
                progress.update(examples.size)

    names = sorted(totals)  # every rank sees the same sets
    sets = {}
    if names:
        flat = distributed.sum_to_main(torch.stack([totals[n].flat() for n in names]), proc)
        if proc.is_main:
            sets = {n: _summarise(flat[i], max_steps, halting) for i, n in enumerate(names)}
    return Evaluation(sets=sets, saved_outputs={k: torch.cat(v) for k, v in saved.items()})


def gather_arc_votes(votes: ArcVotes, proc) -> Optional[ArcVotes]:
    """All ranks' votes merged on rank 0 (in rank order); None elsewhere."""
    states = distributed.gather_to_main(votes.state_dict(), proc)
    if states is None:
        return None
    merged = ArcVotes(votes.identifiers, votes.blank)
    for state in states:
        part = ArcVotes(votes.identifiers, votes.blank)
        part.load_state_dict(state)
        merged.merge(part)
    return merged
