"""Model configs: the official arch yaml fields, validated once, with errors that name the field.

`TRM(config_dict)` and `HRM(config_dict)` take the dict the official training script builds (arch
yaml fields plus batch_size, seq_len, vocab_size, num_puzzle_identifiers). Keys the model does not
use (`causal`, `name`, `loss`, ...) are ignored, as the official pydantic configs ignore them.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple, Union

from ..ops import BACKENDS

REQUIRED = object()  # the default of a value that must be given

POS_ENCODINGS = ("rope", "learned", "none")
FORWARD_DTYPES = ("bfloat16", "float16", "float32", "float64")
RECOMPUTE_MODES = ("mlp",)  # besides true and false


@dataclass(frozen=True)
class Rule:
    """What one config value may be. Numbers (int, float) lie in [lo, hi], or [lo, hi) with hi_open;
    a str with choices is one of them, a bool with choices true, false or one of them; None is taken only where
    optional. The model configs and the training config (trm_fast.train.config) both check their values with
    `check_value`."""

    kind: type  # int, float, bool, str, dict or list
    default: Any = REQUIRED
    lo: Optional[float] = None
    hi: Optional[float] = None
    hi_open: bool = False
    choices: Optional[Tuple[str, ...]] = None
    optional: bool = False


_KIND_NAMES = {bool: "true or false", str: "a string", dict: "a mapping", list: "a list"}


def _number(value: Any, kind: type, numeric_strings: bool) -> Optional[float]:
    """`value` as an int or a finite float, or None where it is not one."""
    if numeric_strings and isinstance(value, str):
        try:
            value = float(value) if kind is float else int(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind is int:
        return None if isinstance(value, float) and not value.is_integer() else int(value)
    return float(value) if math.isfinite(value) else None


def check_value(label: str, value: Any, rule: Rule, error: type = ValueError, numeric_strings: bool = False) -> Any:
    """`value` checked against `rule` and returned in its type, else `error("{label} must be ..., got ...")`.

    `numeric_strings` also takes numbers written as strings (YAML 1.1 reads 1e-4 as a string)."""
    if value is None and rule.optional:
        return None
    if rule.kind in (int, float):
        number = _number(value, rule.kind, numeric_strings)
        if number is None:
            raise error(f"{label} must be {'an integer' if rule.kind is int else 'a finite number'}, got {value!r}")
        lo, hi = rule.lo, rule.hi
        if (lo is not None and number < lo) or (hi is not None and (number >= hi if rule.hi_open else number > hi)):
            rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}{')' if rule.hi_open else ']'}"
            raise error(f"{label} must be {rng}, got {value!r}")
        return number
    if rule.choices is not None:  # a bool rule with choices takes true, false or one of them
        if (rule.kind is bool and isinstance(value, bool)) or (isinstance(value, str) and value in rule.choices):
            return value
        either = "true, false or " if rule.kind is bool else ""
        raise error(f"{label} must be {either}one of {', '.join(map(repr, rule.choices))}, got {value!r}")
    if not isinstance(value, rule.kind):
        raise error(f"{label} must be {_KIND_NAMES[rule.kind]}, got {value!r}")
    return value


def _field(default=REQUIRED, **rule):
    return field(default=default, metadata={"rule": Rule(default=default, **rule)})


@dataclass(frozen=True)
class TRMConfig:
    """Fields and defaults of the official TinyRecursiveReasoningModel_ACTV1Config."""

    batch_size: int = _field(kind=int, lo=1)
    seq_len: int = _field(kind=int, lo=1)
    num_puzzle_identifiers: int = _field(kind=int, lo=1)
    vocab_size: int = _field(kind=int, lo=1)
    H_cycles: int = _field(kind=int, lo=1)
    L_cycles: int = _field(kind=int, lo=1)
    L_layers: int = _field(kind=int, lo=1)
    hidden_size: int = _field(kind=int, lo=1)
    expansion: float = _field(kind=float, lo=1e-9)
    num_heads: int = _field(kind=int, lo=1)
    pos_encodings: str = _field(kind=str, choices=POS_ENCODINGS)
    halt_max_steps: int = _field(kind=int, lo=1)
    halt_exploration_prob: float = _field(kind=float, lo=0.0, hi=1.0)
    H_layers: int = _field(0, kind=int, lo=0)  # TRM has one module: ignored, as officially
    puzzle_emb_ndim: int = _field(0, kind=int, lo=0)
    rms_norm_eps: float = _field(1e-5, kind=float, lo=1e-30)
    rope_theta: float = _field(10000.0, kind=float, lo=1e-9)
    forward_dtype: str = _field("bfloat16", kind=str, choices=FORWARD_DTYPES)
    mlp_t: bool = _field(False, kind=bool)
    puzzle_emb_len: int = _field(16, kind=int, lo=0)  # 0: ceil(puzzle_emb_ndim / hidden_size)
    no_ACT_continue: bool = _field(True, kind=bool)
    # trm_fast only: None defers to TRM_FAST_BACKEND, then "auto" (trm_fast.backend); resolved by the model
    backend: Optional[str] = _field(None, kind=str, choices=BACKENDS)
    # trm_fast only: the gradient-carrying cycle recomputes in the backward what it can (models/layers.
    # ReasoningModule): on a GPU its ops keep each sublayer's input and run the QKV and gate/up projections
    # again; elsewhere each reasoning-module call keeps its inputs and runs its layers again. The same
    # gradients for a fraction of the activation memory. "mlp": on a GPU only the channel MLP recomputes (its
    # gate/up projection, the largest tensor a layer keeps), the token mixer keeps what it uses; elsewhere as true
    recompute: Union[bool, str] = _field(False, kind=bool, choices=RECOMPUTE_MODES)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]):
        if isinstance(config, cls):
            return config
        if not isinstance(config, Mapping):
            raise TypeError(f"{cls.__name__[:-6]} expects a config dict, got {type(config).__name__}")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in config:
                values[f.name] = check_value(f"config field '{f.name}'", config[f.name], f.metadata["rule"])
            elif f.default is REQUIRED:
                raise ValueError(f"config field '{f.name}' is missing (required by {cls.__name__[:-6]})")
        cfg = cls(**values)
        cfg._check_consistency()
        return cfg

    @property
    def resolved_puzzle_emb_len(self) -> int:
        """Positions taken by the puzzle embedding in front of the sequence."""
        if self.puzzle_emb_len == 0:
            return -(self.puzzle_emb_ndim // -self.hidden_size)
        return self.puzzle_emb_len

    @property
    def full_seq_len(self) -> int:
        """Every position the block sees: puzzle-embedding positions plus the sequence."""
        return self.seq_len + self.resolved_puzzle_emb_len

    def _check_consistency(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"config field 'num_heads' ({self.num_heads}) must divide 'hidden_size' ({self.hidden_size})"
            )
        if self.pos_encodings == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError("config field 'pos_encodings' is 'rope', which needs an even head dim "
                             f"(hidden_size / num_heads = {self.hidden_size // self.num_heads})")
        p = self.resolved_puzzle_emb_len
        if p * self.hidden_size < self.puzzle_emb_ndim:
            raise ValueError(f"config field 'puzzle_emb_len' ({self.puzzle_emb_len}) is too short for "
                             f"'puzzle_emb_ndim' ({self.puzzle_emb_ndim}) at hidden_size {self.hidden_size}: "
                             f"needs at least {-(self.puzzle_emb_ndim // -self.hidden_size)} (or 0 for automatic)")
        if self.puzzle_emb_ndim == 0 and p > 0:
            # The official model builds a carry of seq_len + puzzle_emb_len positions but
            # embeds only seq_len of them, and fails at its first forward.
            raise ValueError(f"config field 'puzzle_emb_len' must be 0 when 'puzzle_emb_ndim' is 0, got {p}")


@dataclass(frozen=True)
class HRMConfig(TRMConfig):
    """Fields and defaults of the official HierarchicalReasoningModel_ACTV1Config.

    HRM has separate H and L modules, always learns Q-continue, and always takes
    ceil(puzzle_emb_ndim / hidden_size) puzzle positions (a `puzzle_emb_len` key is ignored).
    """

    H_layers: int = _field(kind=int, lo=1)
    puzzle_emb_len: int = _field(0, kind=int, lo=0)
    no_ACT_continue: bool = _field(False, kind=bool)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]):
        if isinstance(config, Mapping):
            config = {k: v for k, v in config.items() if k not in ("puzzle_emb_len", "no_ACT_continue")}
        return super().from_dict(config)
