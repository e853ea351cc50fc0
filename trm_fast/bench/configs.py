"""The model shapes that trm_fast is measured on: the paper's configs and a CPU-sized `tiny`."""

import trm_fast

_TRM_SUDOKU = dict(
    seq_len=81, vocab_size=11, num_puzzle_identifiers=1, puzzle_emb_ndim=512, puzzle_emb_len=16,
    H_cycles=3, L_cycles=6, H_layers=0, L_layers=2, hidden_size=512, num_heads=8, expansion=4,
    pos_encodings="rope", halt_max_steps=16, halt_exploration_prob=0.1, forward_dtype="bfloat16",
)

# name -> (model class, config without batch_size, default batch size)
CONFIGS = {
    "sudoku_attn": (trm_fast.TRM, _TRM_SUDOKU, 768),
    "sudoku_mlpt": (trm_fast.TRM, dict(_TRM_SUDOKU, mlp_t=True, pos_encodings="none"), 768),
    "arc_attn": (trm_fast.TRM, dict(_TRM_SUDOKU, seq_len=900, vocab_size=12, num_puzzle_identifiers=1000,
                                    L_cycles=4), 192),
    "sudoku_hrm": (trm_fast.HRM, dict(_TRM_SUDOKU, H_cycles=2, L_cycles=2, H_layers=4, L_layers=4), 768),
    "tiny": (trm_fast.TRM, dict(_TRM_SUDOKU, puzzle_emb_ndim=64, num_puzzle_identifiers=4, hidden_size=64,
                                num_heads=2, H_cycles=2, L_cycles=2, halt_max_steps=4, forward_dtype="float32"), 8),
}


def model_config(name: str, batch: int, backend: str) -> dict:
    """The config dict for `name` at this batch size and backend."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    return dict(CONFIGS[name][1], batch_size=batch, backend=backend)
