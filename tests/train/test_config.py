import pytest
import yaml
from trm_fast.arch import model_kind
from trm_fast.train import ConfigError, load_config, recipe_names
from trm_fast.train.config import dump_yaml


def test_shipped_recipes_load_and_follow_the_paper():
    assert set(recipe_names()) >= {"tiny", "sudoku_mlp", "sudoku_att", "maze", "arc1", "arc2"}
    mlp, att, maze, arc1 = (load_config(n) for n in ("sudoku_mlp", "sudoku_att", "maze", "arc1"))
    assert mlp.arch["mlp_t"] and mlp.arch["pos_encodings"] == "none" and not att.arch["mlp_t"]
    assert (mlp.epochs, mlp.eval_interval, mlp.lr, mlp.puzzle_emb_lr) == (50000, 5000, 1e-4, 1e-4)
    assert mlp.weight_decay == mlp.puzzle_emb_weight_decay == 1.0
    assert (maze.arch["L_cycles"], arc1.arch["L_cycles"], mlp.arch["L_cycles"]) == (4, 4, 6)
    assert arc1.evaluators[0]["name"] == "arc@ARC" and arc1.puzzle_emb_lr == 1e-2 and arc1.epochs == 100000
    assert all(c.ema and c.global_batch_size == 768 and model_kind(c.arch["name"]) == "trm" for c in (mlp, att, maze, arc1))
    assert mlp.run_name == "sudoku_mlp"


def test_overrides_reach_nested_keys_and_take_hydra_spellings():
    cfg = load_config("tiny", ["arch.L_cycles=3", "lr=1e-4", "+run_name=x", "data_paths=[a, b]",
                               "arch.loss.loss_type=softmax_cross_entropy", "eval_interval=null", "data_paths_test=c"])
    assert cfg.arch["L_cycles"] == 3 and cfg.lr == 1e-4 and cfg.run_name == "x" and cfg.data_paths == ["a", "b"]
    assert cfg.arch["loss"]["loss_type"] == "softmax_cross_entropy" and cfg.eval_interval is None
    assert cfg.test_paths == ["c"]


def test_a_dumped_config_loads_back(tmp_path):
    cfg = load_config("arc1", ["seed=3"])
    path = tmp_path / "again.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(str(path)) == cfg


def test_official_yaml_numbers_and_model_names(tmp_path):
    text = yaml.safe_dump(load_config("tiny").to_dict()).replace("lr: 0.001", "lr: 1e-3")
    assert "lr: 1e-3" in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(str(path)).lr == 1e-3  # PyYAML reads 1e-3 as a string; hydra reads a float
    assert model_kind("recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1") == "hrm"
    assert model_kind("trm") == "trm" and model_kind("recursive_reasoning.trm_singlez@X") is None


def _write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return str(path)


def _tiny_text(**replace):
    text = yaml.safe_dump(load_config("tiny").to_dict(), sort_keys=False)
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("edit, message", [
    (dict(), None),
    ({"lr: 0.001": "lr: fast"}, r"bad.yaml:\d+: config key 'lr' must be a finite number, got 'fast'"),
    ({"seed: 0": "sed: 0"}, r"bad.yaml:\d+: unknown config key 'sed' \(did you mean 'seed'\?\)"),
    ({"  L_cycles: 2": "  L_cycle: 2"},
     r"bad.yaml:\d+: unknown config key 'arch.L_cycle' \(did you mean 'arch.L_cycles'\?\)"),
    ({"  hidden_size: 64": "  hidden_size: 63"}, r"bad.yaml:\d+: config key 'arch.num_heads' \(2\) must divide"),
    ({"  pos_encodings: rope": "  pos_encodings: alibi"}, r"config key 'arch.pos_encodings' must be one of"),
    ({"ema: true": "ema: 1"}, r"bad.yaml:\d+: config key 'ema' must be true or false, got 1"),
    ({"beta2: 0.95": "beta2: 1.0"}, r"config key 'beta2' must be in \[0.0, 1.0\), got 1.0"),
    ({"eval_interval: 2": "eval_interval: 3"}, r"'eval_interval' \(3\) must divide 'epochs' \(4\)"),
    ({"global_batch_size: 16\n": ""}, r"bad.yaml: config key 'global_batch_size' is missing"),
    ({"  name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1":
      "  name: recursive_reasoning.transformers_baseline@Model_ACTV2"}, r"'arch.name' must name TRM or HRM"),
    ({"    loss_type: stablemax_cross_entropy": "    loss_type: mse"}, r"'arch.loss.loss_type' must be one of"),
    ({"  H_cycles: 2": "  H_cycles: 2\n  vocab_size: 10"}, r"'arch.vocab_size' comes from the dataset"),
    ({"evaluators: []": "evaluators: [{name: 'maze@Maze'}]"}, r"unknown evaluator 'maze@Maze'"),
    ({"data_paths:\n- data/tiny": "data_paths: []"}, r"'data_paths' must name at least one"),
])
def test_bad_config_files_name_file_line_and_key(tmp_path, edit, message):
    path = _write(tmp_path, _tiny_text(**edit))
    if message is None:
        load_config(path)
        return
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_malformed_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, "lr: 1\narch: [unclosed\nseed: 0\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: malformed YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="a config must be a YAML mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="hydra 'defaults:' composition is not supported"):
        load_config(_write(tmp_path, "defaults:\n  - arch: trm\n"))


@pytest.mark.parametrize("override, message", [
    ("lrr=1", r"command-line override 'lrr=1': unknown config key 'lrr' \(did you mean 'lr'\?\)"),
    ("epochs", r"command-line override 'epochs': expected key=value"),
    ("lr=[1", r"command-line override 'lr=\[1': the value is not valid YAML"),
    ("seed.x=1", r"'seed' is not a mapping"),
    ("arch.halt_max_steps=0",
     r"command-line override 'arch.halt_max_steps=0': config key 'arch.halt_max_steps' must be >= 1"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_missing_config_file_lists_the_recipes(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config file not found: nope.yaml \(shipped recipes: .*tiny"):
        load_config("nope.yaml")
