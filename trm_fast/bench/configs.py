"""What trm_fast is measured on: the paper's configs, a CPU-sized `tiny`, or any training config yaml.

A bench config is a training recipe's `arch` (trm_fast/configs/*.yaml, the same file `trm-fast train`
reads) plus the dataset's shape (seq_len, vocab_size, num_puzzle_identifiers) and a batch size per GPU.
For a yaml of your own the shape comes from its dataset's metadata, or from `shape=` when the dataset
is not built on this machine.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Union

import trm_fast

SUDOKU = dict(seq_len=81, vocab_size=11, num_puzzle_identifiers=1)
ARC = dict(seq_len=900, vocab_size=12, num_puzzle_identifiers=1000)
SHAPE_KEYS = tuple(SUDOKU)

# name -> (recipe, data shape, batch per GPU, arch changes, model kind)
_NAMED = {
    "sudoku_attn": ("sudoku_att", SUDOKU, 768, {}, "trm"),
    "sudoku_mlpt": ("sudoku_mlp", SUDOKU, 768, {}, "trm"),
    "arc_attn": ("arc1", ARC, 192, {}, "trm"),  # the paper's 768 is over 4 GPUs
    # HRM's Sudoku-Extreme model (arXiv 2506.21734): two 4-layer modules, 2 x 2 cycles
    "sudoku_hrm": ("sudoku_att", SUDOKU, 768, dict(H_cycles=2, L_cycles=2, H_layers=4, L_layers=4), "hrm"),
    "tiny": ("tiny", dict(SUDOKU, num_puzzle_identifiers=4), 8, {}, "trm"),
}
NAMES = tuple(_NAMED)
# Fields TRM reads that HRM fixes itself (it always learns Q-continue and sizes its puzzle positions).
_TRM_ONLY = ("no_ACT_continue", "puzzle_emb_len", "mlp_t")


@dataclass(frozen=True)
class BenchConfig:
    name: str
    kind: str  # "trm" or "hrm"
    arch: Dict = field(repr=False)  # model fields, without batch_size and backend
    loss_type: str
    batch: int  # default batch size
    # the trainer's step (backend engine) recomputes the gradient cycle's layers: arch recompute's value
    recompute: Union[bool, str] = False

    def with_recompute(self, mode: Union[bool, str] = True) -> "BenchConfig":
        return dataclasses.replace(self, recompute=mode)

    @property
    def model_class(self):
        return trm_fast.TRM if self.kind == "trm" else trm_fast.HRM

    def model_config(self, batch: int, backend: str, recompute: Union[bool, str] = False) -> dict:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        return dict(self.arch, batch_size=batch, backend=backend, recompute=recompute)

    def build(self, batch: int, backend: str, recompute: Union[bool, str] = False):
        """The model at this batch size, ops backend and recompute setting: `TRM(...)` or `HRM(...)`."""
        return self.model_class(self.model_config(batch, backend, recompute))


def _from_train_config(name: str, tc, shape: Dict, batch: int, changes: Dict, kind: Optional[str]):
    from trm_fast.arch import model_kind

    kind = kind or model_kind(tc.arch["name"])
    if kind is None:
        raise ValueError(f"config {name!r}: arch name {tc.arch['name']!r} is neither a TRM nor an HRM")
    arch = {k: v for k, v in tc.arch.items() if k not in ("name", "loss", "backend", "recompute")}
    arch.update(changes)
    if kind == "hrm":
        arch = {k: v for k, v in arch.items() if k not in _TRM_ONLY}
    arch.update(shape)
    return BenchConfig(name, kind, arch, tc.arch["loss"]["loss_type"], batch, tc.arch.get("recompute", False))


def _dataset_shape(tc) -> Optional[Dict]:
    from trm_fast.data.dataset import merge_metadata

    paths = [p for p in tc.data_paths if os.path.isfile(os.path.join(p, "train", "dataset.json"))]
    if not paths or len(paths) != len(tc.data_paths):
        return None
    meta = merge_metadata(tc.data_paths, "train")
    return dict(seq_len=meta.seq_len, vocab_size=meta.vocab_size, num_puzzle_identifiers=meta.num_puzzle_identifiers)


def parse_shape(text: str) -> Dict:
    """`seq_len=81,vocab_size=11,num_puzzle_identifiers=1` -> dict (all three keys)."""
    shape = {}
    for part in filter(None, text.split(",")):
        key, eq, value = part.partition("=")
        if not eq or key not in SHAPE_KEYS or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--shape takes {'=N,'.join(SHAPE_KEYS)}=N with positive integers, got {part!r}")
        shape[key] = int(value)
    missing = [k for k in SHAPE_KEYS if k not in shape]
    if missing:
        raise ValueError(f"--shape is missing {', '.join(missing)}")
    return shape


def load(name: str, shape: Optional[Dict] = None) -> BenchConfig:
    """A named bench config, or a training config yaml (a path, or a shipped recipe's name).

    A yaml's data shape is `shape` when given, else read from its dataset's metadata."""
    from trm_fast.train.config import load_config, resolve_config_path

    if name in _NAMED and not os.path.isfile(name):
        recipe, named_shape, batch, changes, kind = _NAMED[name]
        return _from_train_config(name, load_config(recipe, []), shape or named_shape, batch, changes, kind)
    try:
        path = resolve_config_path(name)
    except FileNotFoundError:
        raise ValueError(f"unknown config {name!r}: not one of {', '.join(NAMES)}, a shipped recipe or a yaml file")
    tc = load_config(path, [])
    shape = shape or _dataset_shape(tc)
    if shape is None:
        raise ValueError(f"config {name!r}: its dataset ({', '.join(tc.data_paths)}) is not built here, so its "
                         "shape is unknown; build it with `trm-fast data` or pass "
                         "--shape seq_len=N,vocab_size=N,num_puzzle_identifiers=N")
    stem = os.path.splitext(os.path.basename(path))[0]
    return _from_train_config(stem, tc, shape, tc.global_batch_size, {}, None)
