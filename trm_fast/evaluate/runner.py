"""Evaluation: every test example through all halt_max_steps ACT steps, as the official evaluate().

Per set, the loss head's metrics at the last step, averaged over the examples (count): accuracy (mean
per-example token accuracy), exact_accuracy (whole puzzle right), q_halt_accuracy, steps, lm_loss,
q_halt_loss (and q_continue_loss). Then the halting statistics: each example's halting step is the first
step at which the model would have stopped on its own (Q-halt > 0, or Q-halt > Q-continue for models
that learn Q-continue), or the last step; reported as a histogram, its mean, and the accuracies of the
predictions at that step, next to the exact accuracy after each step.
"""

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from .. import distributed
from ..data.format import IGNORE_LABEL_ID
from .arc import ArcVotes

LOSS_HEAD_METRICS = ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss",
                     "q_continue_loss")


@dataclass
class SetTotals:
    """Sums over one set's examples, on the model's device."""
    sums: torch.Tensor  # (len(LOSS_HEAD_METRICS) + 3,): count, the loss-head sums, exact and token accuracy at halt
    halt_histogram: torch.Tensor  # (M,) examples halting at step 1..M
    exact_by_step: torch.Tensor  # (M,) examples exactly right after step 1..M

    @classmethod
    def zeros(cls, steps: int, device) -> "SetTotals":
        z = lambda n: torch.zeros(n, dtype=torch.float64, device=device)  # noqa: E731
        return cls(z(len(LOSS_HEAD_METRICS) + 3), z(steps), z(steps))

    def flat(self) -> torch.Tensor:
        return torch.cat([self.sums, self.halt_histogram, self.exact_by_step])


def _summarise(flat: torch.Tensor, steps: int, has_q_continue: bool) -> dict:
    values = flat.tolist()
    n = len(LOSS_HEAD_METRICS)
    count = values[0]
    per = max(count, 1.0)
    out = {"count": int(count)}
    for i, name in enumerate(LOSS_HEAD_METRICS):
        if name != "q_continue_loss" or has_q_continue:
            out[name] = values[1 + i] / per
    histogram = [int(v) for v in values[n + 3:n + 3 + steps]]
    out["halting"] = {
        "histogram": histogram,
        "mean_halt_step": sum((s + 1) * h for s, h in enumerate(histogram)) / per,
        "exact_accuracy_at_halt": values[n + 1] / per,
        "accuracy_at_halt": values[n + 2] / per,
        "exact_accuracy_by_step": [v / per for v in values[n + 3 + steps:]],
    }
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


@torch.inference_mode()
def evaluate(head, batches: Iterable[Tuple[str, dict, int]], *, device, proc=None, arc_votes: Optional[ArcVotes] = None,
             save_keys: Sequence[str] = (), progress=None) -> Evaluation:
    """Run `head` (an ACTLossHead in eval mode) over `batches`; metrics are summed over ranks to rank 0.

    `arc_votes` collects this rank's ARC votes (merge and score them with `gather_arc_votes`)."""
    model = head.model
    steps, learns_continue = model.config.halt_max_steps, model.learns_q_continue
    totals: Dict[str, SetTotals] = {}
    saved: Dict[str, List[torch.Tensor]] = {}
    return_keys = {"preds", "q_halt_logits", "q_continue_logits"} | set(save_keys)

    for set_name, batch, _ in batches:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        t = totals.setdefault(set_name, SetTotals.zeros(steps, device))
        labels = batch["labels"]
        mask = labels != IGNORE_LABEL_ID
        n_labels = mask.sum(-1)
        valid = n_labels > 0  # padding rows have no labels
        undecided = valid.clone()
        exact_at_halt = torch.zeros_like(valid)
        token_at_halt = torch.zeros(labels.shape[0], dtype=torch.float32, device=device)

        carry = head.initial_carry(batch)
        for step in range(steps):
            carry, _, metrics, outputs, _ = head(return_keys=return_keys, carry=carry, batch=batch)
            correct = mask & (outputs["preds"] == labels)
            exact = valid & (correct.sum(-1) == n_labels)
            token = correct.sum(-1).float() / n_labels.clamp_min(1)
            t.exact_by_step[step] += exact.sum()
            threshold = outputs["q_continue_logits"] if learns_continue else 0
            stops = undecided & ((outputs["q_halt_logits"] > threshold) | (step == steps - 1))
            t.halt_histogram[step] += stops.sum()
            exact_at_halt |= stops & exact
            token_at_halt = torch.where(stops, token, token_at_halt)
            undecided &= ~stops

        t.sums[0] += metrics["count"]
        for i, name in enumerate(LOSS_HEAD_METRICS):
            if name in metrics:
                t.sums[1 + i] += metrics[name].double()
        t.sums[-2] += exact_at_halt.sum()
        t.sums[-1] += token_at_halt[valid].double().sum()

        if arc_votes is not None:
            arc_votes.add(batch["puzzle_identifiers"].cpu().numpy(), batch["inputs"].cpu().numpy(),
                          outputs["preds"].cpu().numpy(), outputs["q_halt_logits"].cpu().numpy())
        for k in save_keys:
            source = batch if k in batch else outputs
            if k in source:
                saved.setdefault(k, []).append(source[k].cpu())
        if progress is not None:
            progress.update(1)

    proc = proc or distributed.Process(0, 1, torch.device(device))
    names = sorted(totals)  # every rank sees the same sets (padding batches included)
    sets = {}
    if names:
        flat = distributed.sum_to_main(torch.stack([totals[n].flat() for n in names]), proc)
        if proc.is_main:
            sets = {n: _summarise(flat[i], steps, learns_continue) for i, n in enumerate(names)}
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
