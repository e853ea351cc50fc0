"""Evaluate one checkpoint on one dataset split: `trm-fast eval CHECKPOINT --data DIR`.

The checkpoint is a trm_fast training checkpoint (it carries its config, the training metadata and the
EMA weights, which are used unless `use_ema=False`), a model file written by `trm-fast export`
(.safetensors, its config inside), or an official checkpoint (a state_dict with `_orig_mod.model.` or
`model.` keys), which needs its config: the `all_config.yaml` the official run saved next to it, or any
file with the same `arch:` block. vocab_size and num_puzzle_identifiers are then read off the
checkpoint's weights, seq_len off the dataset.
"""

import os
import time
from typing import Optional

import torch
import yaml
from tqdm import tqdm

from ..arch import ConfigError, build_model, check_arch
from ..checkpoint import FORMAT, PUZZLE_EMB_KEY, TOKENS_KEY, load_checkpoint, read_file, strip_prefix
from ..data.dataset import Metadata, PuzzleSplit
from ..engine import Engine
from .arc import ArcVotes, read_arc_files
from .model_file import halt_threshold_for, is_model_file, read_model_file
from .runner import evaluate


def _read_arch(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path} (an official checkpoint needs its run's "
                                "all_config.yaml, or --config FILE)")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("arch"), dict):
        raise ConfigError(f"{path}: no 'arch:' mapping")
    return check_arch(data["arch"], lambda key: path)


def read_checkpoint(path: str, config_path: Optional[str] = None, use_ema: bool = True):
    """(arch dict, model state_dict with bare keys, training metadata dict or None, EMA weights used).
    `path`: a training checkpoint, an official one, or a model file (`trm-fast export`, .safetensors)."""
    if is_model_file(path):
        model = read_model_file(path)
        arch = _read_arch(config_path) if config_path else check_arch(model.arch, lambda key: path)
        return arch, model.weights, model.metadata, model.ema
    state = read_file(path)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        weights, ema = dict(state["model"]), bool(use_ema and state.get("ema"))
        if ema:
            weights.update(state["ema"])
        arch = _read_arch(config_path) if config_path else state["config"]["arch"]
        return arch, weights, state.get("metadata"), ema
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is neither a trm_fast training checkpoint nor a model state_dict")
    config_path = config_path or os.path.join(os.path.dirname(os.path.abspath(path)), "all_config.yaml")
    return _read_arch(config_path), strip_prefix(state), None, False


def model_metadata(weights: dict, saved: Optional[dict], data: Metadata, checkpoint: str, data_file: str) -> Metadata:
    """The metadata the model was built with, checked against the dataset's."""
    vocab = weights[TOKENS_KEY].shape[0] if TOKENS_KEY in weights else data.vocab_size
    ids = weights[PUZZLE_EMB_KEY].shape[0] if PUZZLE_EMB_KEY in weights else (saved or {}).get(
        "num_puzzle_identifiers", data.num_puzzle_identifiers)
    seq_len = (saved or {}).get("seq_len", data.seq_len)
    if data.vocab_size != vocab:
        raise ValueError(f"{data_file} has vocab_size {data.vocab_size}, but the model in {checkpoint} has "
                         f"vocab_size {vocab}: this checkpoint was trained on another kind of data")
    if data.seq_len != seq_len:
        raise ValueError(f"{data_file} has seq_len {data.seq_len}, but the model in {checkpoint} was trained with "
                         f"seq_len {seq_len}")
    if data.num_puzzle_identifiers > ids:
        raise ValueError(f"{data_file} has {data.num_puzzle_identifiers} puzzle identifiers, the model in "
                         f"{checkpoint} knows {ids}")
    return Metadata(**{**data.to_dict(), "vocab_size": vocab, "num_puzzle_identifiers": ids})


def load_model(path: str, data: Metadata, data_name: str, *, batch_size: int, device, config_path=None,
               use_ema: bool = True):
    """(model in eval mode on `device`, arch, whether EMA weights were used): the checkpoint's model, its
    shape read off its weights and checked against the data it will see (`data`, named `data_name`)."""
    arch, weights, saved_meta, ema = read_checkpoint(path, config_path, use_ema)
    meta = model_metadata(weights, saved_meta, data, path, data_name)
    _, model = build_model(arch, meta, batch_size, torch.device(device))
    load_checkpoint(weights, model)
    return model.eval(), arch, ema


def default_device(name: Optional[str] = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def evaluate_checkpoint(path: str, data_dir: str, *, split: str = "test", batch_size: int = 256,
                        device: Optional[str] = None, config_path: Optional[str] = None, use_ema: bool = True,
                        pass_ks=(1, 2), submission_k: int = 2, halting: str = "all",
                        halt_threshold: Optional[float] = None) -> dict:
    """Metrics per set, halting statistics and, for ARC datasets (with test_puzzles.json), pass@K, through
    trm_fast.Engine with `halting` "all" (the official evaluation) or "q" (stop at the model's decision,
    where its halt margin exceeds `halt_threshold`: default, the model file's, else 0). Returns a JSON-able
    dict with the wall time; its "submission" entry is the Kaggle submission for ARC, else absent."""
    data = PuzzleSplit([data_dir], split)
    model, arch, ema = load_model(path, data.metadata, os.path.join(data_dir, split, "dataset.json"),
                                  batch_size=batch_size, device=default_device(device), config_path=config_path,
                                  use_ema=use_ema)
    halt_threshold = halt_threshold_for(path, halt_threshold)
    engine = Engine(model, batch_size)

    arc = None
    if os.path.isfile(os.path.join(data_dir, "test_puzzles.json")):
        identifiers, test_puzzles = read_arc_files(data_dir)
        arc = ArcVotes(identifiers, data.metadata.blank_identifier_id)
    total = sum(s.inputs.shape[0] for s in data.sets.values())
    start = time.perf_counter()
    with tqdm(total=total, unit="puzzle", desc=f"eval (halting {halting})", dynamic_ncols=True) as bar:
        result = evaluate(engine, data, arch["loss"]["loss_type"], halting=halting, halt_threshold=halt_threshold,
                          arc_votes=arc, progress=bar)
    seconds = time.perf_counter() - start  # evaluate() ends reading its sums back: the device is done
    out = {"checkpoint": os.path.abspath(path), "data": os.path.abspath(data_dir), "split": split,
           "ema_weights": ema, "halt_max_steps": model.config.halt_max_steps, "halting": halting,
           "halt_threshold": halt_threshold, "compute_dtype": str(engine.dtype).removeprefix("torch."),
           "device": str(engine.device), "compiled": engine.compiled, "seconds": seconds,
           "examples_per_s": total / seconds, "sets": result.sets}
    if arc is not None:
        out["ARC"], out["submission"] = arc.score(test_puzzles, pass_ks, submission_k)
    return out
