"""Evaluation of trained models: exact and token accuracy, halting statistics, ARC pass@K with voting
over augmentations and a Kaggle submission (`trm-fast eval CHECKPOINT --data DIR`)."""

from .checkpoint import evaluate_checkpoint
from .report import format_report

__all__ = ["evaluate_checkpoint", "format_report"]
