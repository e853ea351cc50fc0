"""Checks on what enters the model, each raising one error that names the problem.

Shape, dtype and device checks cost nothing and run on every call. Checks that read tensor values
(token ids inside the vocabulary, puzzle ids below num_puzzle_identifiers) sync with the host, so
they run once per new batch on the eager path and never while torch.compile traces or a CUDA graph is
captured.
"""

import weakref

import torch

from ..data.format import IGNORE_LABEL_ID

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_structure(config, carry, batch, device: torch.device, training: bool):
    if not isinstance(batch, dict):
        raise TypeError(f"batch must be a dict of tensors, got {type(batch).__name__}")
    for key in ("inputs", "puzzle_identifiers"):
        if key not in batch:
            raise KeyError(f"batch is missing the key '{key}' (it has {sorted(batch)})")
    if set(batch) != set(carry.current_data):
        raise KeyError(f"batch keys {sorted(batch)} differ from the carry's {sorted(carry.current_data)}: "
                       "build the carry with initial_carry(batch) from a batch of the same keys")
    rows = carry.halted.shape[0]
    if rows == 0:
        raise ValueError("the batch is empty (0 rows)")
    expected = {"inputs": (rows, config.seq_len), "labels": (rows, config.seq_len), "puzzle_identifiers": (rows,)}
    for key, t in batch.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"batch['{key}'] must be a tensor, got {type(t).__name__}")
        if t.device != device:
            raise ValueError(f"batch['{key}'] is on {t.device}, but the model is on {device}")
        if key in expected and t.dtype not in _INTEGER_DTYPES:
            raise TypeError(f"batch['{key}'] must hold integer ids, got {t.dtype}")
        if t.ndim == 0 or t.shape[0] != rows:
            raise ValueError(f"batch['{key}'] has batch size {t.shape[0] if t.ndim else 'none (a scalar)'}, "
                             f"but the carry holds {rows} rows")
        if key in expected and tuple(t.shape) != expected[key]:
            raise ValueError(f"batch['{key}'] must have shape {expected[key]} (seq_len {config.seq_len}), "
                             f"got {tuple(t.shape)}")
    if carry.halted.device != device:
        raise ValueError(f"the carry is on {carry.halted.device}, but the model is on {device}")
    if training and config.puzzle_emb_ndim > 0 and rows != config.batch_size:
        raise ValueError(f"in training the batch size must equal config batch_size ({config.batch_size}), the "
                         f"size of the sparse puzzle embedding's gradient buffer; got {rows}")


def tensor_version(t: torch.Tensor) -> int:
    """t's in-place modification counter; -1 for inference tensors, which track none (they cannot
    change outside inference mode)."""
    return -1 if t.is_inference() else t._version


class ValueChecker:
    """Checks id ranges once per new batch (a batch seen before, unmodified, is not checked again)."""

    def __init__(self):
        self._seen = None  # (weak refs to the batch's tensors, their versions)

    def __call__(self, config, batch):
        if torch.compiler.is_compiling() or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()):
            return  # tracing, or capturing a CUDA graph (train/graphed_step.py checks the batch before)
        tensors = tuple(batch.values())
        if self._seen is not None:
            refs, versions = self._seen
            if len(refs) == len(tensors) and all(r() is t for r, t in zip(refs, tensors)) and \
                    versions == tuple(map(tensor_version, tensors)):
                return
        check_ranges(config, batch)
        self._seen = (tuple(weakref.ref(t) for t in tensors), tuple(map(tensor_version, tensors)))


def check_ranges(config, batch, what: str = "batch['{}']"):
    """Token, puzzle and label ids inside their ranges; `what` names a tensor in the message. One host sync."""
    inputs, ids = batch["inputs"], batch["puzzle_identifiers"]
    labels = batch.get("labels")
    labels_valid = labels[labels != IGNORE_LABEL_ID] if labels is not None else inputs[:0]
    zero = torch.zeros((), dtype=torch.int64, device=inputs.device)

    def lo_hi(t):  # on inputs' device: the engine takes each tensor from any device
        return (t.min().long().to(zero.device), t.max().long().to(zero.device)) if t.numel() else (zero, zero)

    # one host sync for all six numbers
    stats = torch.stack([*lo_hi(inputs), *lo_hi(ids), *lo_hi(labels_valid)]).tolist()
    in_lo, in_hi, id_lo, id_hi, lab_lo, lab_hi = stats
    v, n = config.vocab_size, config.num_puzzle_identifiers
    if in_lo < 0 or in_hi >= v:
        raise ValueError(f"{what.format('inputs')} holds token ids in [{in_lo}, {in_hi}], outside the vocabulary [0, {v})")
    if id_lo < 0 or id_hi >= n:
        raise ValueError(f"{what.format('puzzle_identifiers')} holds ids in [{id_lo}, {id_hi}], outside "
                         f"[0, num_puzzle_identifiers={n})")
    if lab_lo < 0 or lab_hi >= v:
        raise ValueError(f"{what.format('labels')} holds ids in [{lab_lo}, {lab_hi}], outside the vocabulary [0, {v}) "
                         f"(and not the ignore id {IGNORE_LABEL_ID})")
