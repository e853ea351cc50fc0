"""`trm-fast eval` on a hand-made model whose answers are known: with every block weight zero and the
latents starting at zero, all latents equal the input embedding x (unit RMS), so the prediction at each
position is lm_head's choice for the input token there, the same at every ACT step, and Q-halt reads
the first token."""

import json
import os

import pytest
import torch
import trm_fast
import yaml
from trm_fast.evaluate import evaluate_checkpoint
from trm_fast.evaluate.report import plot_report

from helpers import run_cli
from _trainutil import write_arc_dataset, write_split

HIDDEN = 16
ARCH = dict(name="recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
            loss=dict(name="losses@ACTLossHead", loss_type="stablemax_cross_entropy"),
            halt_exploration_prob=0.1, halt_max_steps=4, H_cycles=2, L_cycles=2, H_layers=0, L_layers=1,
            hidden_size=HIDDEN, num_heads=2, expansion=2, puzzle_emb_ndim=0, puzzle_emb_len=0,
            pos_encodings="rope", forward_dtype="float32")


def hand_made_checkpoint(directory, vocab_size, seq_len, halt_token):
    """An official-style checkpoint (+ all_config.yaml) of a model that copies its input and halts at
    once on puzzles whose first token is `halt_token`."""
    cfg = {k: v for k, v in ARCH.items() if k not in ("name", "loss")}
    model = trm_fast.TRM(dict(cfg, batch_size=1, seq_len=seq_len, vocab_size=vocab_size, num_puzzle_identifiers=1))
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    state["inner.embed_tokens.embedding_weight"][:, :vocab_size] = torch.eye(vocab_size)
    state["inner.lm_head.weight"][:, :vocab_size] = torch.eye(vocab_size)
    state["inner.q_head.bias"][:] = -5.0
    state["inner.q_head.weight"][0, halt_token] = 10.0 / HIDDEN**0.5  # q_halt = +5 on the halting token
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "step_7")
    torch.save({"_orig_mod.model." + k: v for k, v in state.items()}, path)
    with open(os.path.join(directory, "all_config.yaml"), "w") as f:
        yaml.safe_dump({"arch": ARCH, "global_batch_size": 8}, f)
    return path


def test_metrics_and_halting_statistics_are_the_known_ones(tmp_path):
    inputs = [[1, 2, 2, 1], [2, 3, 4, 5], [3, 1, 1, 1], [1, 4, 4, 4], [2, 2, 2, 2]]
    labels = [[1, 2, 2, 1], [2, 3, 4, 5], [3, 1, 1, 2], [0, 4, 4, 4], [5, 5, 5, 5]]  # 0: no label
    write_split(tmp_path / "data" / "test", inputs, labels, [0] * 5, [1] * 5, [1] * 5, vocab_size=6, num_ids=1)
    ckpt = hand_made_checkpoint(tmp_path / "run", vocab_size=6, seq_len=4, halt_token=1)
    result = evaluate_checkpoint(ckpt, str(tmp_path / "data"), batch_size=2, device="cpu")
    m = result["sets"]["all"]
    assert m["count"] == 5
    assert m["exact_accuracy"] == pytest.approx(3 / 5) and m["accuracy"] == pytest.approx((3 + 0.75) / 5)
    assert m["q_halt_accuracy"] == pytest.approx(4 / 5) and m["steps"] == 4  # row 1 is right but would go on
    h = m["halting"]
    assert h["histogram"] == [2, 0, 0, 3] and h["mean_halt_step"] == pytest.approx(2.8)
    assert h["exact_accuracy_at_halt"] == pytest.approx(3 / 5)
    assert h["exact_accuracy_by_step"] == [pytest.approx(0.6)] * 4
    assert h["accuracy_at_halt"] == pytest.approx(0.75) and "ARC" not in result


def test_metrics_count_real_examples_only_whatever_the_batch_size(tmp_path):
    inputs = [[1, 2, 2, 1], [2, 3, 4, 5], [3, 1, 1, 1], [1, 4, 4, 4], [2, 2, 2, 2]]
    write_split(tmp_path / "data" / "test", inputs, inputs, [0] * 5, [1] * 5, [1] * 5, vocab_size=6, num_ids=1)
    ckpt = hand_made_checkpoint(tmp_path / "run", vocab_size=6, seq_len=4, halt_token=1)
    results = [evaluate_checkpoint(ckpt, str(tmp_path / "data"), batch_size=b, device="cpu")["sets"]
               for b in (2, 3, 256)]
    assert results[0]["all"]["q_halt_loss"] > 0
    for other in results[1:]:
        assert {k: v for k, v in other["all"].items() if k != "halting"} == pytest.approx(
            {k: v for k, v in results[0]["all"].items() if k != "halting"})
        assert other["all"]["halting"] == results[0]["all"]["halting"]


def test_the_plot_of_an_official_evaluation_shows_halting_and_accuracy_by_step(tmp_path):
    inputs = [[1, 2, 2, 1], [2, 3, 4, 5], [3, 1, 1, 1]]
    write_split(tmp_path / "data" / "test", inputs, inputs, [0] * 3, [1] * 3, [1] * 3, vocab_size=6, num_ids=1)
    ckpt = hand_made_checkpoint(tmp_path / "run", vocab_size=6, seq_len=4, halt_token=1)
    result = evaluate_checkpoint(ckpt, str(tmp_path / "data"), device="cpu")
    assert "exact_accuracy_by_step" in result["sets"]["all"]["halting"]
    plot_report(result, str(tmp_path / "all.png"))
    assert (tmp_path / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_halting_q_stops_each_example_at_the_models_decision(tmp_path):
    inputs = [[1, 2, 2, 1], [2, 3, 4, 5], [3, 1, 1, 1], [1, 4, 4, 4], [2, 2, 2, 2]]
    labels = [[1, 2, 2, 1], [2, 3, 4, 5], [3, 1, 1, 2], [0, 4, 4, 4], [5, 5, 5, 5]]
    write_split(tmp_path / "data" / "test", inputs, labels, [0] * 5, [1] * 5, [1] * 5, vocab_size=6, num_ids=1)
    ckpt = hand_made_checkpoint(tmp_path / "run", vocab_size=6, seq_len=4, halt_token=1)
    out = tmp_path / "q.json"
    png = tmp_path / "q.png"
    proc = run_cli("eval", ckpt, "--data", tmp_path / "data", "--device", "cpu", "--halting", "q", "--out", out,
                   "--png", png)
    assert proc.returncode == 0, proc.stderr
    assert "halting q: each example stopped" in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in proc.stdout
    m = json.loads(out.read_text())["sets"]["all"]
    assert m["steps"] == pytest.approx((1 + 4 + 4 + 1 + 4) / 5)  # rows starting with token 1 halt at once
    assert m["halting"]["histogram"] == [2, 0, 0, 3] and m["halting"]["policy"] == "q"
    assert m["exact_accuracy"] == pytest.approx(3 / 5) and "exact_accuracy_by_step" not in m["halting"]
    assert "5 examples in " in proc.stdout and " per s" in proc.stdout

    # Q-halt is +5 where the model halts: above a threshold of 5.5 it never does
    proc = run_cli("eval", ckpt, "--data", tmp_path / "data", "--device", "cpu", "--halting", "q", "--out", out,
                   "--halt-threshold", "5.5")
    assert proc.returncode == 0 and "exceeds 5.5 (the halt threshold)" in proc.stdout, proc.stderr
    result = json.loads(out.read_text())
    assert result["halt_threshold"] == 5.5 and result["sets"]["all"]["halting"]["histogram"] == [0, 0, 0, 5]
    proc = run_cli("eval", ckpt, "--data", tmp_path / "data", "--halt-threshold", "inf")
    assert proc.returncode == 2 and "--halt-threshold: must be a finite number, got inf" in proc.stderr
    (tmp_path / "ro").write_text("a file, not a directory")
    proc = run_cli("eval", ckpt, "--data", tmp_path / "data", "--device", "cpu", "--png", tmp_path / "ro" / "x.png")
    assert proc.returncode == 2 and "--png" in proc.stderr and not (tmp_path / "q.json.tmp").exists()


def test_arc_votes_undo_augmentations_and_write_a_submission(tmp_path):
    data, grids = write_arc_dataset(tmp_path / "arc")
    ckpt = hand_made_checkpoint(tmp_path / "run", vocab_size=12, seq_len=900, halt_token=2)
    out = tmp_path / "eval.json"
    proc = run_cli("eval", ckpt, "--data", data, "--batch-size", "3", "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "pass@1 0.5000" in proc.stdout and "exact" in proc.stdout
    result = json.loads(out.read_text())
    assert result["ARC"] == {"ARC/pass@1": 0.5, "ARC/pass@2": 0.5} and result["sets"]["all"]["count"] == 4
    submission = json.loads((tmp_path / "submission.json").read_text())
    assert submission == {"same": [{"attempt_1": grids["same"][0], "attempt_2": grids["same"][0]}],
                          "other": [{"attempt_1": grids["other"][0], "attempt_2": grids["other"][0]}]}


def test_bad_eval_inputs_are_named(tmp_path):
    write_split(tmp_path / "data" / "test", [[1, 2]], [[1, 2]], [0], [1], [1], vocab_size=7, num_ids=1)
    ckpt = hand_made_checkpoint(tmp_path / "run", vocab_size=6, seq_len=2, halt_token=1)
    with pytest.raises(ValueError, match=r"data/test/dataset.json has vocab_size 7, but the model in .*step_7 has "
                                         r"vocab_size 6"):
        evaluate_checkpoint(ckpt, str(tmp_path / "data"), device="cpu")
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope"):
        evaluate_checkpoint(str(tmp_path / "nope"), str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match=r"dataset directory not found: .*missing"):
        evaluate_checkpoint(ckpt, str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not a PyTorch checkpoint"):
        evaluate_checkpoint(str(tmp_path / "notes.txt"), str(tmp_path / "data"))
    os.remove(tmp_path / "run" / "all_config.yaml")
    proc = run_cli("eval", ckpt, "--data", tmp_path / "data", "--device", "cpu")
    assert proc.returncode == 2 and "all_config.yaml" in proc.stderr and "--config" in proc.stderr
