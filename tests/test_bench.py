"""The bench harness on the CPU: the tiny config, the reference backend, rows as BENCH.md defines."""

import json
import math

import pytest
from trm_fast.bench.__main__ import main
from trm_fast.bench.configs import CONFIGS, model_config
from trm_fast.bench.flops import step_flops

ROW_FIELDS = {"config", "mode", "backend", "batch", "seq", "steps", "ms", "ms_min", "ms_max", "warmup_s", "peak_gib",
              "gflop", "tflops", "floor_ms", "puzzles_per_s", "device", "torch", "triton", "commit", "date"}


def test_tiny_rows_follow_the_schema(tmp_path):
    out = tmp_path / "rows.json"
    assert main(["--config", "tiny", "--backend", "reference-eager", "--batch", "1,3", "--reps", "1",
                 "--json", str(out), "--commit", "abc123", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["mode"], r["batch"]) for r in rows] == [("train", 1), ("infer", 1), ("train", 3), ("infer", 3)]
    for r in rows:
        assert ROW_FIELDS <= set(r), ROW_FIELDS - set(r)
        assert r["commit"] == "abc123" and r["device"] == "cpu" and r["peak_gib"] is None and r["floor_ms"] is None
        assert r["ms_min"] <= r["ms"] <= r["ms_max"] and math.isclose(r["tflops"], r["gflop"] / r["ms"])
        assert r["steps"] == (1 if r["mode"] == "train" else 4) and r["seq"] == 81 + 16
    infer = rows[1]
    assert math.isclose(infer["puzzles_per_s"], 1 / (infer["ms"] / 1000))


def test_flop_count_matches_the_official_flop_counter():
    # torch.utils.flop_counter on the official model (../shared/baseline/official_h100.json)
    for name, per_step_infer, per_train in [("sudoku_attn", 28.577760256, 47.765947392),
                                            ("sudoku_mlpt", 25.6324864, 42.722270208),
                                            ("arc_attn", 238.859503616, 406.706116608),
                                            ("sudoku_hrm", 13.744807936, 36.709138432)]:
        cls, _, _ = CONFIGS[name]
        cfg = cls(model_config(name, 1, "reference")).config
        hrm = cls.__name__ == "HRM"
        assert math.isclose(step_flops(cfg, hrm, 1, False, hrm) / 1e9, per_step_infer, rel_tol=2e-3), name
        assert math.isclose(step_flops(cfg, hrm, 1, True, hrm) / 1e9, per_train, rel_tol=2e-3), name


@pytest.mark.parametrize("args, message", [
    (["--config", "huge"], "unknown config 'huge'"),
    (["--batch", "0"], "--batch sizes must be >= 1"),
    (["--batch", "x"], "--batch takes integers"),
])
def test_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit):
        main(args)
    assert message in capsys.readouterr().err


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        main(["--config", "tiny", "--backend", "fast", "--device", "cpu"])
