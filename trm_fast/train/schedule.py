"""The official learning-rate schedule: linear warmup, then a cosine decay to lr_min_ratio * lr.

    lr(t) = lr * t / W                                                       t < W
    lr(t) = lr * (r + max(0, (1 - r) * (1 + cos(pi * (t - W) / (T - W))) / 2))   otherwise

t is the step being taken (1 for the first), W = lr_warmup_steps, T = total steps, r = lr_min_ratio.
"""

import math


def cosine_with_warmup(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    if step < warmup_steps:
        return base_lr * float(step) / float(max(1, warmup_steps))
    progress = float(step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))
