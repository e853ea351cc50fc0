import pytest
import trm_fast
from helpers import tiny_config


def test_defaults_match_official():
    m = trm_fast.TRM({k: v for k, v in tiny_config().items()
                      if k not in ("puzzle_emb_len", "forward_dtype", "H_layers")} | {"puzzle_emb_ndim": 16 * 16})
    c = m.config
    assert (c.rms_norm_eps, c.rope_theta, c.forward_dtype, c.mlp_t, c.puzzle_emb_len, c.no_ACT_continue) == \
        (1e-5, 10000.0, "bfloat16", False, 16, True)
    assert m.inner.puzzle_emb_len == 16


def test_puzzle_emb_len_zero_means_ceiling_and_hrm_ignores_the_key():
    assert trm_fast.TRM(tiny_config(puzzle_emb_ndim=40, puzzle_emb_len=0)).inner.puzzle_emb_len == 3  # ceil(40/16)
    assert trm_fast.HRM(tiny_config(puzzle_emb_ndim=40, puzzle_emb_len=16)).inner.puzzle_emb_len == 3


def test_extra_keys_are_ignored():
    trm_fast.TRM(tiny_config(causal=False, name="recursive_reasoning.trm@X", loss={"name": "losses@ACTLossHead"}))


@pytest.mark.parametrize("field", ["batch_size", "seq_len", "vocab_size", "hidden_size", "num_heads",
                                   "pos_encodings", "halt_max_steps", "L_cycles"])
def test_missing_field_is_named(field):
    cfg = tiny_config()
    del cfg[field]
    with pytest.raises(ValueError, match=f"'{field}' is missing"):
        trm_fast.TRM(cfg)


def test_hrm_needs_H_layers():
    cfg = tiny_config()
    del cfg["H_layers"]
    trm_fast.TRM(cfg)  # TRM ignores H_layers
    with pytest.raises(ValueError, match="'H_layers' is missing"):
        trm_fast.HRM(cfg)


@pytest.mark.parametrize("field, value, message", [
    ("pos_encodings", "sinusoid", "'pos_encodings' must be one of 'rope', 'learned', 'none'"),
    ("forward_dtype", "int8", "'forward_dtype' must be one of"),
    ("hidden_size", 0, "'hidden_size' must be >= 1"),
    ("hidden_size", 16.5, "'hidden_size' must be an integer"),
    ("halt_exploration_prob", 1.5, r"'halt_exploration_prob' must be in \[0.0, 1.0\]"),
    ("mlp_t", "yes", "'mlp_t' must be true or false"),
    ("expansion", "4", "'expansion' must be a finite number"),
    ("num_heads", 3, "'num_heads' \\(3\\) must divide 'hidden_size'"),
    ("backend", "cuda", "'backend' must be one of 'auto', 'reference', 'fused'"),
])
def test_invalid_field_is_named_with_accepted_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        trm_fast.TRM(tiny_config(**{field: value}))


def test_puzzle_emb_len_too_short():
    with pytest.raises(ValueError, match="'puzzle_emb_len' \\(1\\) is too short for 'puzzle_emb_ndim' \\(40\\)"):
        trm_fast.TRM(tiny_config(puzzle_emb_ndim=40, puzzle_emb_len=1))


def test_puzzle_emb_len_without_puzzle_embedding_is_refused():
    with pytest.raises(ValueError, match="'puzzle_emb_len' must be 0 when 'puzzle_emb_ndim' is 0"):
        trm_fast.TRM(tiny_config(puzzle_emb_ndim=0, puzzle_emb_len=16))


def test_config_must_be_a_dict():
    with pytest.raises(TypeError, match="expects a config dict"):
        trm_fast.TRM(["hidden_size", 16])
