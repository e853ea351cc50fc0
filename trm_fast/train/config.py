"""Training configs: the official `pretrain.py` field names, in one self-contained YAML file.

A config is the official `cfg_pretrain.yaml` with its `arch:` group written inline:

    arch:                        # config/arch/trm.yaml of the official repository
      name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1   # or ...hrm@..., or just trm / hrm
      loss: {name: losses@ACTLossHead, loss_type: stablemax_cross_entropy}
      H_cycles: 3                # ... every model field of trm_fast.TRM / trm_fast.HRM
    data_paths: [data/sudoku-extreme-1k-aug-1000]
    global_batch_size: 768
    epochs: 50000
    ...

`load_config(path_or_recipe, overrides)` reads it, applies `key=value` overrides (dotted keys reach into
`arch`, values are YAML; a leading `+` as in hydra's `+run_name=x` is accepted), checks every key and
value, and returns a `TrainConfig`. Every error names its source: `file:line` or the override.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

import yaml

from ..arch import ConfigError, check_arch, unknown_key
from ..models.config import REQUIRED, Rule, check_value

ARC_EVALUATOR = "arc@ARC"
PATH_LISTS = ("data_paths", "data_paths_test", "eval_save_outputs")  # a single path may be written bare

# Top-level keys: official PretrainConfig fields, then trm_fast's own (last block).
SCHEMA = {
    "arch": Rule(dict),
    "data_paths": Rule(list),
    "data_paths_test": Rule(list, []),
    "evaluators": Rule(list, []),
    "global_batch_size": Rule(int, lo=1),
    "epochs": Rule(int, lo=1),
    "lr": Rule(float, lo=0.0),
    "lr_min_ratio": Rule(float, lo=0.0, hi=1.0),
    "lr_warmup_steps": Rule(int, lo=0),
    "weight_decay": Rule(float, lo=0.0),
    "beta1": Rule(float, lo=0.0, hi=1.0, hi_open=True),
    "beta2": Rule(float, lo=0.0, hi=1.0, hi_open=True),
    "puzzle_emb_lr": Rule(float, lo=0.0),
    "puzzle_emb_weight_decay": Rule(float, lo=0.0),
    "project_name": Rule(str, None, optional=True),
    "run_name": Rule(str, None, optional=True),
    "load_checkpoint": Rule(str, None, optional=True),
    "checkpoint_path": Rule(str, None, optional=True),
    "seed": Rule(int, 0),
    "checkpoint_every_eval": Rule(bool, False),
    "eval_interval": Rule(int, None, lo=1, optional=True),
    "min_eval_interval": Rule(int, 0, lo=0, optional=True),
    "eval_save_outputs": Rule(list, []),
    "ema": Rule(bool, False),
    "ema_rate": Rule(float, 0.999, lo=0.0, hi=1.0),
    "freeze_weights": Rule(bool, False),
    # trm_fast only
    "checkpoint_every_steps": Rule(int, None, lo=1, optional=True),  # also checkpoint every N steps
    "compile": Rule(bool, None, optional=True),  # torch.compile the training step; default: on a GPU only
    "cuda_graph": Rule(bool, False),  # replay the whole step from one CUDA graph (train/graphed_step.py)
}

ARC_EVALUATOR_KEYS = {"name": str, "submission_K": int, "pass_Ks": list, "aggregated_voting": bool}


@dataclass(frozen=True)
class TrainConfig:
    arch: Dict[str, Any]
    data_paths: List[str]
    global_batch_size: int
    epochs: int
    lr: float
    lr_min_ratio: float
    lr_warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    puzzle_emb_lr: float
    puzzle_emb_weight_decay: float
    data_paths_test: List[str] = field(default_factory=list)
    evaluators: List[Dict[str, Any]] = field(default_factory=list)
    project_name: Optional[str] = None
    run_name: Optional[str] = None
    load_checkpoint: Optional[str] = None
    checkpoint_path: Optional[str] = None
    seed: int = 0
    checkpoint_every_eval: bool = False
    eval_interval: Optional[int] = None
    min_eval_interval: Optional[int] = 0
    eval_save_outputs: List[str] = field(default_factory=list)
    ema: bool = False
    ema_rate: float = 0.999
    freeze_weights: bool = False
    checkpoint_every_steps: Optional[int] = None
    compile: Optional[bool] = None
    cuda_graph: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def test_paths(self) -> List[str]:
        """Official rule: data_paths_test when given, else data_paths."""
        return self.data_paths_test or self.data_paths


# ---------------------------------------------------------------------------------------------------------------
# Reading

def recipe_names() -> List[str]:
    """The recipes shipped in trm_fast/configs (without .yaml)."""
    files = resources.files("trm_fast").joinpath("configs")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml")) if files.is_dir() else []


def resolve_config_path(name: str) -> str:
    """A YAML path as given, or the name of a shipped recipe (`tiny`, `sudoku_mlp`, ...)."""
    if os.path.isfile(name):
        return name
    stem = name[:-5] if name.endswith(".yaml") else name
    if os.sep not in name and stem in recipe_names():
        return str(resources.files("trm_fast").joinpath("configs", stem + ".yaml"))
    raise FileNotFoundError(f"config file not found: {name} (shipped recipes: {', '.join(recipe_names())})")


def _line_numbers(node, prefix="", out=None) -> Dict[str, int]:
    """Dotted key -> 1-based line of every mapping key in a composed YAML document."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            dotted = prefix + str(key_node.value)
            out[dotted] = key_node.start_mark.line + 1
            _line_numbers(value_node, dotted + ".", out)
    return out


def _read_yaml(path: str) -> Tuple[dict, Dict[str, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise FileNotFoundError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
        lines = _line_numbers(yaml.compose(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise ConfigError(f"{where}: malformed YAML: {getattr(err, 'problem', None) or err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of keys to values, got {type(data).__name__}")
    if "defaults" in data:
        raise ConfigError(f"{path}:{lines.get('defaults', 1)}: hydra 'defaults:' composition is not supported: "
                          "write the arch fields inline under 'arch:' (see the shipped recipes)")
    return data, {k: f"{path}:{line}" for k, line in lines.items()}


def _apply_override(data: dict, where: Dict[str, str], override: str):
    """`a.b.c=value`: value parsed as YAML, stored at data['a']['b']['c']."""
    source = f"command-line override '{override}'"
    key, sep, text = override.partition("=")
    key = key.strip().lstrip("+")
    if not sep or not key:
        raise ConfigError(f"{source}: expected key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: the value is not valid YAML ({getattr(err, 'problem', None) or err})") from None
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: '{'.'.join(parts[:depth + 1])}' is not a mapping, so '{key}' cannot be set")
        node = child
    node[parts[-1]] = value
    where[key] = source


def load_config(path_or_recipe: str, overrides: Optional[List[str]] = None) -> TrainConfig:
    """Read a config file (or shipped recipe), apply `key=value` overrides, and check everything."""
    path = resolve_config_path(path_or_recipe)
    data, where = _read_yaml(path)
    for override in overrides or []:
        _apply_override(data, where, override)
    config = validate(data, where, path)
    if config.run_name is None:  # official: a random two-word slug; a stable name makes --resume work
        config = dataclasses.replace(config, run_name=os.path.splitext(os.path.basename(path))[0])
    return config


# ---------------------------------------------------------------------------------------------------------------
# Checking

def validate(data: dict, where: Dict[str, str], path: str = "<config>") -> TrainConfig:
    """Check a config mapping; `where` maps dotted keys to their source for error messages."""
    def at(key):
        return where.get(key, path)

    values = {}
    for name in data:
        if name not in SCHEMA:
            raise unknown_key(name, SCHEMA, at(name))
    for name, rule in SCHEMA.items():
        if name not in data:
            if rule.default is REQUIRED:
                raise ConfigError(f"{path}: config key '{name}' is missing")
            values[name] = rule.default
            continue
        value = [data[name]] if name in PATH_LISTS and isinstance(data[name], str) else data[name]
        values[name] = check_value(f"{at(name)}: config key '{name}'", value, rule, ConfigError, numeric_strings=True)

    for name in PATH_LISTS:
        for item in values[name]:
            if not isinstance(item, str) or not item:
                raise ConfigError(f"{at(name)}: config key '{name}' must list non-empty strings, got {item!r}")
    if not values["data_paths"]:
        raise ConfigError(f"{at('data_paths')}: config key 'data_paths' must name at least one dataset directory")
    values["arch"] = check_arch(values["arch"], at)
    values["evaluators"] = [_check_evaluator(e, at("evaluators")) for e in values["evaluators"]]
    if values["eval_interval"] is not None and values["epochs"] % values["eval_interval"]:
        raise ConfigError(f"{at('eval_interval')}: config key 'eval_interval' ({values['eval_interval']}) must "
                          f"divide 'epochs' ({values['epochs']}): evaluation runs every eval_interval epochs")
    return TrainConfig(**values)


def _check_evaluator(evaluator: Any, where: str) -> dict:
    if not isinstance(evaluator, dict) or "name" not in evaluator:
        raise ConfigError(f"{where}: each entry of 'evaluators' must be a mapping with a 'name', got {evaluator!r}")
    if evaluator["name"] != ARC_EVALUATOR:
        raise ConfigError(f"{where}: unknown evaluator {evaluator['name']!r}; trm_fast has {ARC_EVALUATOR!r}")
    out = dict(submission_K=2, pass_Ks=[1, 2, 5, 10, 100, 1000], aggregated_voting=True)  # official defaults
    for key, value in evaluator.items():
        if key not in ARC_EVALUATOR_KEYS:
            raise unknown_key(key, ARC_EVALUATOR_KEYS, where, "key of evaluator arc@ARC")
        kind = ARC_EVALUATOR_KEYS[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is list:
            ok = ok and value and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in value)
        if kind is int:
            ok = ok and value >= 1
        if not ok:
            raise ConfigError(f"{where}: evaluator arc@ARC key '{key}' has a bad value {value!r}")
        out[key] = value
    out["pass_Ks"] = list(out["pass_Ks"])
    return out


def dump_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML, loadable again by load_config."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
