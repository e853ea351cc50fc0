"""A trained model in one file: its weights in safetensors, with what builds the model (the arch and the
data's shape) as the file's metadata. `trm-fast export` writes one from a checkpoint; every command that
takes a checkpoint reads one. The Sudoku solver shipped in the package is one (SUDOKU_SOLVER).

Metadata (all strings, as safetensors stores them): "format" (FORMAT), "arch" and "metadata" (JSON: the
arch dict of the training config, and the dataset metadata the model was trained with, or null), "ema"
("true" when the weights are the EMA ones), "halt_threshold" (the one to stop at with halting "q", tuned
on training puzzles; commands use it unless told another) and "description" (free text: what it was
trained on, and how well it does).
"""

import json
import os
from dataclasses import dataclass
from importlib import resources
from typing import Optional

import torch

from ..disk import atomic_file

SUFFIX = ".safetensors"
FORMAT = "trm_fast.model/1"
SUDOKU_SOLVER = str(resources.files("trm_fast").joinpath("pretrained", "sudoku.safetensors"))


def is_model_file(path) -> bool:
    return os.fspath(path).endswith(SUFFIX)


@dataclass
class ModelFile:
    arch: dict
    weights: dict
    metadata: Optional[dict]  # of the dataset the model was trained on
    ema: bool
    halt_threshold: float
    description: str


def write_model_file(path, arch: dict, weights: dict, metadata: Optional[dict], *, ema: bool,
                     dtype: torch.dtype = torch.bfloat16, halt_threshold: float = 0.0, description: str = "") -> int:
    """Write the weights (floating ones cast to `dtype`) and their metadata to `path`; returns its bytes."""
    from safetensors.torch import save

    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in weights.items()}
    data = save(tensors, metadata={
        "format": FORMAT, "arch": json.dumps(arch), "metadata": json.dumps(metadata), "ema": json.dumps(ema),
        "halt_threshold": json.dumps(halt_threshold), "description": description})
    with atomic_file(path, "wb") as f:  # the old file or the whole new one, never half of it
        f.write(data)
    return len(data)


def read_model_file(path) -> ModelFile:
    """The file's model, with one error naming the file when it is missing or is not a trm_fast model file."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a safetensors file ({err})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not a trm_fast model (its metadata has format "
                         f"{meta.get('format')!r}, expected {FORMAT!r}); write one with `trm-fast export`")
    return ModelFile(json.loads(meta["arch"]), weights, json.loads(meta["metadata"]), json.loads(meta["ema"]),
                     _halt_threshold(meta), meta.get("description", ""))


def _halt_threshold(meta: dict) -> float:
    return float(json.loads(meta.get("halt_threshold", "0")))


def halt_threshold_for(path, given: Optional[float] = None) -> float:
    """`given`, else the halt threshold a model file recommends, else 0 as in training. (Read after the
    model: a file that is missing or is no model file has failed there, naming itself.)"""
    if given is not None or not is_model_file(path):
        return 0.0 if given is None else given
    from safetensors import safe_open

    with safe_open(os.fspath(path), framework="pt") as f:
        return _halt_threshold(f.metadata() or {})
