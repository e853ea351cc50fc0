"""Load official (and trm_fast) model checkpoints into a TRM or HRM, with errors that name keys.

The official training script saves `model.state_dict()` of the loss head, usually wrapped by
torch.compile: keys start with `_orig_mod.model.` (compiled) or `model.` (DISABLE_COMPILE). Bare
model keys are accepted too.
"""

import os
from typing import Mapping, Union

import torch
from torch import nn

PREFIXES = ("_orig_mod.model.", "model.", "_orig_mod.")
PUZZLE_EMB_KEY = "inner.puzzle_emb.weights"
FORMAT = "trm_fast.train/1"  # the "format" entry of a trm_fast training checkpoint (trm_fast.train.checkpoint)
TOKENS_KEY = "inner.embed_tokens.embedding_weight"


def _target_model(model: nn.Module) -> nn.Module:
    """The TRM/HRM inside a loss head and/or a torch.compile wrapper."""
    for _ in range(3):
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "model") and isinstance(model.model, nn.Module) and not hasattr(model, "inner"):
            model = model.model
    return model


def read_file(path, map_location="cpu"):
    """torch.load (weights only) with one clear error for a missing file or one that is no checkpoint."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for non-checkpoint files
        raise ValueError(f"{path} is not a PyTorch checkpoint ({type(err).__name__}: {str(err)[:200]})") from None


def _read(source, map_location) -> Mapping:
    if isinstance(source, Mapping):
        return source
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    state = read_file(path, map_location)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]  # a trm_fast training checkpoint: the model's state_dict under "model"
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a model checkpoint: expected a state_dict (a dict of tensors), "
                         f"got {type(state).__name__}")
    return state


def strip_prefix(state: Mapping) -> dict:
    """Remove the official wrappers' key prefix (`_orig_mod.model.` or `model.`), if any."""
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def load_checkpoint(source: Union[str, os.PathLike, Mapping], model: nn.Module, *,
                    reset_puzzle_emb: bool = False, map_location="cpu") -> nn.Module:
    """Load a checkpoint (a path or a state_dict) into `model` (TRM, HRM, or a loss head around one).

    A puzzle embedding of a different shape is an error unless `reset_puzzle_emb=True`, which sets
    every row to the checkpoint's mean row (the official fine-tuning behaviour). Any other missing,
    extra or mis-shaped key is an error naming it. Returns the model.
    """
    target = _target_model(model)
    state = strip_prefix(_read(source, map_location))
    expected = target.state_dict()

    if PUZZLE_EMB_KEY in state and PUZZLE_EMB_KEY in expected:
        found, want = state[PUZZLE_EMB_KEY].shape, expected[PUZZLE_EMB_KEY].shape
        if found[1:] == want[1:] and found[0] != want[0]:  # as wide, for another number of puzzles
            if not reset_puzzle_emb:
                raise ValueError(f"checkpoint key '{PUZZLE_EMB_KEY}' has shape {tuple(found)}, the model expects "
                                 f"{tuple(want)} (another num_puzzle_identifiers?); pass reset_puzzle_emb=True to "
                                 "start every puzzle from the checkpoint's mean embedding")
            state[PUZZLE_EMB_KEY] = state[PUZZLE_EMB_KEY].mean(0, keepdim=True).expand(want).contiguous()

    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    misshaped = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
                 for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    problems = []
    if TOKENS_KEY in state and TOKENS_KEY in expected and state[TOKENS_KEY].shape[1:] != expected[TOKENS_KEY].shape[1:]:
        problems.append(f"the checkpoint has hidden_size {state[TOKENS_KEY].shape[1]}, the model "
                        f"{expected[TOKENS_KEY].shape[1]}: build the model from the checkpoint's own arch config")
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if extra:
        problems.append("unexpected keys: " + ", ".join(extra))
    if misshaped:
        problems.append("mis-shaped keys: " + "; ".join(misshaped[:3])
                        + (f"; and {len(misshaped) - 3} more" if len(misshaped) > 3 else ""))
    if problems:
        raise ValueError(f"checkpoint does not match {type(target).__name__}: " + " | ".join(problems))
    target.load_state_dict(state, strict=True)
    return model
