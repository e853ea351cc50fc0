"""Training checkpoints: everything needed to continue a run exactly, written atomically.

`{run dir}/step_{N}.pt` is a dict (loadable with `torch.load(..., weights_only=True)`):

    model         the model's state_dict, bare TRM/HRM keys (trm_fast.load_checkpoint reads this key)
    ema           {parameter name: averaged weight}, or None without EMA
    optimizers    [optimizer.state_dict()] in the official order
    carry         [per rank: the ACT carry as a dict of CPU tensors], None before the first step
    rng           [per rank: torch, CUDA, NumPy and Python generator states]
    data_position the training sampler's position (the same on every rank)
    step, iteration, evals_done, world_size, config, metadata (of the training split)

The file is written to a temporary name in the same directory, flushed to disk, then renamed over
the final name, so a crash leaves either the old file or the new one, never half of one.
"""

import glob
import os
import random
import re
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..checkpoint import FORMAT, read_file
from ..disk import atomic_file
from ..models.act import Carry, InnerCarry


def carry_to_dict(carry: Optional[Carry]) -> Optional[Dict[str, Any]]:
    if carry is None:
        return None
    return {"z_H": carry.inner_carry.z_H.cpu(), "z_L": carry.inner_carry.z_L.cpu(), "steps": carry.steps.cpu(),
            "halted": carry.halted.cpu(), "current_data": {k: v.cpu() for k, v in carry.current_data.items()}}


def carry_from_dict(state: Optional[Dict[str, Any]], device) -> Optional[Carry]:
    if state is None:
        return None
    return Carry(InnerCarry(state["z_H"].to(device), state["z_L"].to(device)), state["steps"].to(device),
                 state["halted"].to(device), {k: v.to(device) for k, v in state["current_data"].items()})


def regroup_carries(carries: List[Optional[Dict[str, Any]]], world_size: int) -> List[Optional[Dict[str, Any]]]:
    """Per-rank carries (as carry_to_dict writes them) for `world_size` ranks. Rank r of W holds rows
    [r * B / W, (r + 1) * B / W) of every global batch (train/sampler.py), so the carries of one process
    count, stacked in rank order, are the global batch's rows, split again in that order for another."""
    if not carries or any(c is None for c in carries):
        return [None] * world_size

    def split(parts):
        whole = torch.cat(parts)
        if whole.shape[0] % world_size:
            raise ValueError(f"a carry of {whole.shape[0]} rows cannot be split over {world_size} processes")
        return whole.chunk(world_size)
    fields = {k: split([c[k] for c in carries]) for k in ("z_H", "z_L", "steps", "halted")}
    data = {k: split([c["current_data"][k] for c in carries]) for k in carries[0]["current_data"]}
    return [{**{k: v[r] for k, v in fields.items()}, "current_data": {k: v[r] for k, v in data.items()}}
            for r in range(world_size)]


def rng_state() -> Dict[str, Any]:
    """This process's generator states, as plain objects."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss),
            "python": random.getstate()}


def set_rng_state(state: Dict[str, Any]):
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])


def checkpoint_file(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, f"step_{step}.pt")


def latest_checkpoint(run_dir: str) -> Optional[str]:
    """The step_N.pt of highest N in `run_dir`, or None."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "step_*.pt")):
        match = re.fullmatch(r"step_(\d+)\.pt", os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def save_atomic(obj: Any, path: str):
    """torch.save to a temporary file next to `path`, fsync, then rename over `path`; a full disk is
    DiskFullError naming `path`, and leaves `path` as it was."""
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def load(path: str) -> Dict[str, Any]:
    """A trm_fast training checkpoint, checked to be one."""
    state = read_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a trm_fast training checkpoint (no 'format': '{FORMAT}'); an official "
                         "checkpoint can start a new run with load_checkpoint=PATH")
    return state
