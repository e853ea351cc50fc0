"""The `arch:` block of a config (the official config/arch/*.yaml written inline): which model it names,
its checking, and the model and loss head built from it with a dataset's metadata, as the official
create_model builds them. Training and evaluation (of a checkpoint with its config) both use it.

The model config is the arch fields plus batch_size (global_batch_size / world_size in training),
vocab_size, seq_len and num_puzzle_identifiers from the dataset's metadata, and causal = False.
"""

import dataclasses
import difflib
from typing import Optional, Tuple

import torch
from torch import nn

from .models import ACTLossHead, HRM, TRM
from .models.config import HRMConfig, TRMConfig
from .models.losses import LOSS_TYPES

# Filled in from the dataset, as the official create_model does; an arch that sets them is an error.
DATA_FIELDS = ("batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers")


class ConfigError(ValueError):
    """A config file or override is malformed or holds a bad value; the message says where."""


def model_kind(arch_name: str) -> Optional[str]:
    """'trm' for recursive_reasoning.trm@..., 'hrm' for recursive_reasoning.hrm@...; None otherwise.

    Only the module part counts, so the official variants trm_hier6 / trm_singlez are not taken for TRM."""
    module = arch_name.split("@")[0].split(".")[-1].lower()
    return module if module in ("trm", "hrm") else None


def unknown_key(name: str, known, where: str, what: str = "config key") -> ConfigError:
    """The error for a key not in `known`, with the closest known one as a hint."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}: unknown {what} '{name}'{hint}; known: {', '.join(sorted(known))}")


def check_arch(arch: dict, at) -> dict:
    """`arch` checked key by key and value by value; `at(dotted key)` names the source of each key for
    the error messages."""
    if "name" not in arch or not isinstance(arch["name"], str):
        raise ConfigError(f"{at('arch')}: config key 'arch.name' is missing or not a string "
                          "(e.g. recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1)")
    kind = model_kind(arch["name"])
    if kind is None:
        raise ConfigError(f"{at('arch.name')}: config key 'arch.name' must name TRM or HRM "
                          f"(recursive_reasoning.trm@... or recursive_reasoning.hrm@...), got {arch['name']!r}")
    config_class = TRMConfig if kind == "trm" else HRMConfig
    fields = {f.name for f in dataclasses.fields(config_class)} - set(DATA_FIELDS)
    known = fields | {"name", "loss"}
    for name in arch:
        if name in DATA_FIELDS:
            raise ConfigError(f"{at('arch.' + name)}: config key 'arch.{name}' comes from the dataset (or "
                              "global_batch_size) and cannot be set")
        if name not in known:
            raise unknown_key("arch." + name, {"arch." + k for k in known}, at("arch." + name))

    loss = arch.get("loss")
    if not isinstance(loss, dict):
        raise ConfigError(f"{at('arch')}: config key 'arch.loss' must be a mapping with 'name' and 'loss_type', "
                          f"got {loss!r}")
    for name in loss:
        if name not in ("name", "loss_type"):
            raise unknown_key("arch.loss." + name, {"arch.loss.name", "arch.loss.loss_type"}, at("arch.loss." + name))
    if str(loss.get("name", "")).split("@")[-1] != "ACTLossHead":
        raise ConfigError(f"{at('arch.loss.name')}: config key 'arch.loss.name' must be losses@ACTLossHead, "
                          f"got {loss.get('name')!r}")
    if loss.get("loss_type") not in LOSS_TYPES:
        raise ConfigError(f"{at('arch.loss.loss_type')}: config key 'arch.loss.loss_type' must be one of "
                          f"{', '.join(map(repr, LOSS_TYPES))}, got {loss.get('loss_type')!r}")

    # Check the model fields now, with placeholders for what the dataset gives, so a typo fails early.
    probe = {k: v for k, v in arch.items() if k not in ("name", "loss")}
    probe.update(batch_size=1, seq_len=1, vocab_size=2, num_puzzle_identifiers=1)
    try:
        config_class.from_dict(probe)
    except ValueError as err:
        msg = str(err).replace("config field '", "config key 'arch.")
        bad = msg.split("config key '")[1].split("'")[0] if "config key '" in msg else "arch"
        raise ConfigError(f"{at(bad)}: {msg}") from None
    return arch


def model_config(arch: dict, metadata, batch_size: int, device: torch.device) -> dict:
    """The dict TRM / HRM take: the arch fields and the dataset's shape."""
    cfg = {k: v for k, v in arch.items() if k not in ("name", "loss")}
    if "backend" not in cfg and device.type == "cpu":
        # No fused kernel runs on the CPU: say so once here instead of one fallback warning per op.
        cfg["backend"] = "reference"
    cfg.update(batch_size=batch_size, vocab_size=metadata.vocab_size, seq_len=metadata.seq_len,
               num_puzzle_identifiers=metadata.num_puzzle_identifiers, causal=False)
    return cfg


def build_model(arch: dict, metadata, batch_size: int, device: torch.device) -> Tuple[ACTLossHead, nn.Module]:
    """(loss head, model), created on `device` so that initialisation draws from its generator."""
    cls = TRM if model_kind(arch["name"]) == "trm" else HRM
    with torch.device(device):
        model = cls(model_config(arch, metadata, batch_size, device))
        head = ACTLossHead(model, arch["loss"]["loss_type"])
    return head, model
