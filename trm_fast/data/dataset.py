"""Reader for the official puzzle dataset format (written by the official dataset/build_*.py and by
`trm-fast data`).

One dataset directory:

    identifiers.json                 list: puzzle identifier -> puzzle name ("<blank>" at 0)
    test_puzzles.json                ARC only: the original test puzzles, for pass@K
    {train,test}/dataset.json        metadata: pad_id, ignore_label_id, blank_identifier_id, vocab_size,
                                     seq_len, num_puzzle_identifiers, total_groups, mean_puzzle_examples,
                                     total_puzzles, sets
    {split}/{set}__inputs.npy        (N, seq_len) token ids of the N examples
    {split}/{set}__labels.npy        (N, seq_len) target ids; ignore_label_id (if not null) means "no label"
    {split}/{set}__puzzle_identifiers.npy   (P,) identifier of each puzzle
    {split}/{set}__puzzle_indices.npy       (P + 1,) puzzle p owns examples [idx[p], idx[p + 1])
    {split}/{set}__group_indices.npy        (G + 1,) group g owns puzzles [idx[g], idx[g + 1])

A group is one original puzzle and its augmentations. Several directories merge as the official loader
merges them: their metadata must agree, the identifier counts add up, and the k-th directory's sets are
named `{set}{k}` (k >= 1).

Training draws its batches in trm_fast.train.sampler's order; evaluation hands whole sets to the engine.
"""

import json
import os
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .format import IGNORE_LABEL_ID

ARRAYS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Metadata:
    pad_id: int
    ignore_label_id: Optional[int]
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    total_puzzles: int
    sets: List[str]

    @classmethod
    def from_file(cls, path: str) -> "Metadata":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"dataset metadata not found: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (ValueError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path} is not valid JSON ({err})") from None
        if not isinstance(raw, dict):
            raise DatasetError(f"{path} must hold a JSON object, got {type(raw).__name__}")
        values = {}
        for f in fields(cls):
            if f.name not in raw:
                raise DatasetError(f"{path} lacks the field '{f.name}'")
            v = raw[f.name]
            ok = {
                "ignore_label_id": v is None or _is_int(v),
                "mean_puzzle_examples": isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                "sets": isinstance(v, list) and v and all(isinstance(s, str) and s for s in v),
            }.get(f.name, _is_int(v) and v >= (1 if f.name in ("vocab_size", "seq_len", "num_puzzle_identifiers")
                                                else 0))
            if not ok:
                raise DatasetError(f"{path}: field '{f.name}' has a bad value {v!r}")
            values[f.name] = v
        return cls(**values)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def merge_metadata(paths: Sequence[str], split: str) -> Metadata:
    """The official merge: shapes and ids must agree; identifiers, groups and puzzles add up."""
    metas = [Metadata.from_file(os.path.join(p, split, "dataset.json")) for p in paths]
    first = metas[0]
    for path, meta in zip(paths[1:], metas[1:]):
        for name in ("seq_len", "vocab_size", "pad_id", "ignore_label_id", "blank_identifier_id", "sets"):
            if getattr(meta, name) != getattr(first, name):
                raise DatasetError(f"{os.path.join(path, split, 'dataset.json')}: '{name}' is "
                                   f"{getattr(meta, name)!r}, but {os.path.join(paths[0], split, 'dataset.json')} "
                                   f"has {getattr(first, name)!r}: datasets trained together must agree")
    total_puzzles = sum(m.total_puzzles for m in metas)
    mean = sum(m.mean_puzzle_examples * m.total_puzzles for m in metas) / max(total_puzzles, 1)
    return Metadata(
        pad_id=first.pad_id, ignore_label_id=first.ignore_label_id, blank_identifier_id=first.blank_identifier_id,
        vocab_size=first.vocab_size, seq_len=first.seq_len,
        num_puzzle_identifiers=sum(m.num_puzzle_identifiers for m in metas),
        total_groups=sum(m.total_groups for m in metas), mean_puzzle_examples=mean, total_puzzles=total_puzzles,
        sets=list(first.sets))


class PuzzleSet:
    """The five arrays of one set; inputs and labels memory-mapped, indices in memory."""

    def __init__(self, directory: str, set_name: str, metadata: Metadata):
        self.files = {k: os.path.join(directory, f"{set_name}__{k}.npy") for k in ARRAYS}
        arrays = {}
        for key, path in self.files.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"dataset file not found: {path}")
            try:
                arrays[key] = np.load(path, mmap_mode="r" if key in ("inputs", "labels") else None)
            except (ValueError, OSError) as err:
                raise DatasetError(f"{path} is not a NumPy .npy file ({err})") from None
        self.inputs, self.labels = arrays["inputs"], arrays["labels"]
        self.puzzle_identifiers = arrays["puzzle_identifiers"]
        self.puzzle_indices, self.group_indices = arrays["puzzle_indices"], arrays["group_indices"]
        self._check(metadata)

    def _check(self, meta: Metadata):
        f = self.files
        for key in ARRAYS:
            if not np.issubdtype(getattr(self, key).dtype, np.integer):
                raise DatasetError(f"{f[key]} must hold integers, got {getattr(self, key).dtype}")
        n = self.inputs.shape[0]
        for key in ("inputs", "labels"):
            arr = getattr(self, key)
            if arr.ndim != 2 or arr.shape != (n, meta.seq_len):
                raise DatasetError(f"{f[key]} has shape {arr.shape}, expected ({n}, seq_len={meta.seq_len})")
        p = self.puzzle_identifiers.shape[0]
        for key, length, last, what in (("puzzle_indices", p + 1, n, "examples"),
                                        ("group_indices", None, p, "puzzles")):
            idx = getattr(self, key)
            if idx.ndim != 1 or idx.size < 1 or (length is not None and idx.size != length):
                raise DatasetError(f"{f[key]} must be 1-D with {length or 'G + 1'} entries, got shape {idx.shape}")
            if idx[0] != 0 or idx[-1] != last or np.any(np.diff(idx) < 0):
                raise DatasetError(f"{f[key]} must rise from 0 to the number of {what} ({last}); "
                                   f"got {idx[0]} ... {idx[-1]}")
        ids = self.puzzle_identifiers
        if ids.size and (ids.min() < 0 or ids.max() >= meta.num_puzzle_identifiers):
            raise DatasetError(f"{f['puzzle_identifiers']} holds ids in [{ids.min()}, {ids.max()}], outside "
                               f"[0, num_puzzle_identifiers={meta.num_puzzle_identifiers})")

    @property
    def num_groups(self) -> int:
        return self.group_indices.size - 1


class PuzzleSplit:
    """One split ('train' or 'test') of one or more dataset directories."""

    def __init__(self, paths: Sequence[str], split: str):
        self.paths, self.split = list(paths), split
        for path in self.paths:
            if not os.path.isdir(path):
                raise FileNotFoundError(f"dataset directory not found: {path}")
        self.metadata = merge_metadata(self.paths, split)
        self.sets: Dict[str, PuzzleSet] = {}
        for set_name in self.metadata.sets:  # official order: set by set, then directory by directory
            for k, path in enumerate(self.paths):
                meta = Metadata.from_file(os.path.join(path, split, "dataset.json"))
                self.sets[set_name + (str(k) if k else "")] = PuzzleSet(os.path.join(path, split), set_name, meta)

    @staticmethod
    def exists(paths: Sequence[str], split: str) -> bool:
        return all(os.path.isfile(os.path.join(p, split, "dataset.json")) for p in paths)

    def collate(self, set_name: str, example_rows: np.ndarray, puzzle_rows: Optional[np.ndarray] = None):
        """These examples as int32 tensors, labels' ignore id mapped to -100; `puzzle_rows` (the puzzle of
        each example) is looked up when not given."""
        data, meta = self.sets[set_name], self.metadata
        if puzzle_rows is None:
            puzzle_rows = np.searchsorted(data.puzzle_indices, example_rows, side="right") - 1
        inputs = np.asarray(data.inputs[example_rows], dtype=np.int32)
        labels = np.asarray(data.labels[example_rows], dtype=np.int32)
        ids = np.asarray(data.puzzle_identifiers[puzzle_rows], dtype=np.int32)
        self._check_tokens(data, example_rows, inputs, labels)
        if meta.ignore_label_id is not None:
            labels[labels == meta.ignore_label_id] = IGNORE_LABEL_ID
        return {"inputs": torch.from_numpy(inputs), "labels": torch.from_numpy(labels),
                "puzzle_identifiers": torch.from_numpy(ids)}

    def _check_tokens(self, data: PuzzleSet, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray):
        """Token ids must lie in [0, vocab_size): checked per batch, so a bad file fails naming the example."""
        v, ignore = self.metadata.vocab_size, self.metadata.ignore_label_id
        for key, arr in (("inputs", inputs), ("labels", labels)):
            bad = (arr < 0) | (arr >= v)
            if key == "labels" and ignore is not None:
                bad &= arr != ignore
            if arr.size and bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DatasetError(f"{data.files[key]}: example {int(rows[row])} holds token id "
                                   f"{int(arr[row][bad[row]][0])}, outside the vocabulary [0, vocab_size={v})")
