"""Training with the official recipe: `trm-fast train CONFIG [key=value ...]`, or from Python:

    from trm_fast.train import load_config, train
    train(load_config("tiny", ["data_paths=[data/my-sudoku]", "epochs=10"]))
"""

from .config import ConfigError, TrainConfig, load_config, recipe_names
from .loop import train

__all__ = ["ConfigError", "TrainConfig", "load_config", "recipe_names", "train"]
