import csv
import json
import os
import signal
import subprocess
import tempfile
import sys
import time

import pytest
import torch
import trm_fast
import yaml
from trm_fast.evaluate import evaluate_checkpoint
from trm_fast.train import load_config, train
from trm_fast.train.loop import Run

from helpers import run_cli
from _trainutil import tiny_overrides, write_arc_dataset


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_tiny_config_trains_evaluates_and_writes_everything(reverse_data, tmp_path):
    data, run_dir = reverse_data(), tmp_path / "run"
    config = load_config("tiny", tiny_overrides(data, run_dir, "epochs=6", "eval_interval=3",
                                                "eval_save_outputs=[inputs, preds]"))
    assert train(config) == str(run_dir)

    rows = _rows(run_dir / "metrics.csv")
    assert rows[0] == ["step", "lr", "count", "accuracy", "exact_accuracy", "lm_loss", "q_halt_accuracy",
                       "q_halt_loss", "steps"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 13))  # 6 epochs x 32 groups / 16
    loss = [float(r[5]) for r in rows[1:]]
    assert sum(loss[-5:]) < sum(loss[:5])
    assert float(rows[1][1]) == pytest.approx(1e-3 / 4)  # warmup: step 1 of 4
    evals = _rows(run_dir / "eval_metrics.csv")
    assert {r[0] for r in evals[1:]} == {"6", "12"}
    assert {"all/exact_accuracy", "all/accuracy", "all/mean_halt_step"} <= {r[1] for r in evals[1:]}
    assert os.listdir(run_dir / "tensorboard") and (run_dir / "metrics.png").stat().st_size > 1000
    saved = torch.load(run_dir / "step_12_all_preds.0", weights_only=True)
    assert saved["inputs"].shape == saved["preds"].shape == (16, 8)

    assert sorted(p for p in os.listdir(run_dir) if p.endswith(".pt")) == ["step_12.pt"]  # no checkpoint_every_eval
    ckpt = torch.load(run_dir / "step_12.pt", weights_only=True)
    assert {"model", "ema", "optimizers", "carry", "rng", "data_position", "step", "config"} <= set(ckpt)
    assert ckpt["step"] == 12 and ckpt["carry"][0]["z_H"].shape == (16, 9, 64) and len(ckpt["optimizers"]) == 2
    model = trm_fast.TRM(dict(yaml.safe_load((run_dir / "config.yaml").read_text())["arch"], batch_size=16,
                              seq_len=8, vocab_size=6, num_puzzle_identifiers=81))
    trm_fast.load_checkpoint(run_dir / "step_12.pt", model)  # the "model" key, bare TRM keys
    assert not torch.equal(ckpt["ema"]["inner.lm_head.weight"], ckpt["model"]["inner.lm_head.weight"])

    # `trm-fast eval` on the final checkpoint sees what the run's last evaluation saw (the EMA weights)
    result = evaluate_checkpoint(str(run_dir / "step_12.pt"), data, batch_size=16, device="cpu")
    last_eval = {r[1]: float(r[2]) for r in evals[1:] if r[0] == "12"}
    assert result["ema_weights"] and result["sets"]["all"]["count"] == 16
    for key in ("accuracy", "exact_accuracy", "lm_loss", "q_halt_accuracy"):
        assert result["sets"]["all"][key] == pytest.approx(last_eval[f"all/{key}"], rel=1e-6)
    raw = evaluate_checkpoint(str(run_dir / "step_12.pt"), data, batch_size=16, device="cpu", use_ema=False)
    assert not raw["ema_weights"] and raw["sets"]["all"]["lm_loss"] != result["sets"]["all"]["lm_loss"]


def test_hrm_and_softmax_train_too(reverse_data, tmp_path):
    config = load_config("tiny", tiny_overrides(
        reverse_data(train_groups=16), tmp_path / "run",
        "arch.name=recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1",
        "arch.H_layers=1", "arch.loss.loss_type=softmax_cross_entropy", "epochs=2", "eval_interval=null", "ema=false",
        "arch.puzzle_emb_len=0"))
    train(config)
    rows = _rows(tmp_path / "run" / "metrics.csv")
    assert "q_continue_loss" in rows[0] and len(rows) == 3
    # evaluation learns nothing: Q-continue has no target there (it used to be logged as a constant 0)
    evals = {r[1] for r in _rows(tmp_path / "run" / "eval_metrics.csv")}
    assert "all/q_halt_loss" in evals and "all/q_continue_loss" not in evals


def test_arc_evaluator_votes_pile_up_across_evaluations_and_resume(tmp_path):
    data, _ = write_arc_dataset(tmp_path / "arc", splits=("train", "test"))
    run_dir = tmp_path / "run"
    config = load_config("tiny", tiny_overrides(
        data, run_dir, "global_batch_size=4", "epochs=4", "eval_interval=2", "checkpoint_every_eval=true",
        "arch.hidden_size=16", "arch.L_layers=1", "arch.puzzle_emb_ndim=16",
        "evaluators=[{name: arc@ARC, pass_Ks: [1, 2]}]"))
    train(config)
    evals = _rows(run_dir / "eval_metrics.csv")
    assert [r[0] for r in evals if r[1] == "ARC/pass@2"] == ["1", "2"]
    assert json.loads((run_dir / "evaluator_ARC_step_2" / "submission.json").read_text()).keys() == {"same", "other"}
    votes = torch.load(run_dir / "step_2.pt", weights_only=True)["arc_votes"][0]
    assert sorted(sum(count for _, count, _ in tally) for _, _, tally in votes) == [4, 4]  # 2 copies x 2 evaluations

    os.remove(run_dir / "step_2.pt")
    train(config, resume="latest")  # from step_1.pt, with the first evaluation's votes
    assert _rows(run_dir / "eval_metrics.csv") == evals
    assert torch.load(run_dir / "step_2.pt", weights_only=True)["arc_votes"][0] == votes


def _kill_when(proc, run_dir, min_rows):
    """SIGKILL `proc` once the first periodic checkpoint exists and `min_rows` steps are logged."""
    deadline = time.time() + 120
    while time.time() < deadline:
        csv_path = run_dir / "metrics.csv"
        if (run_dir / "step_5.pt").exists() and csv_path.exists() and csv_path.read_text().count("\n") > min_rows:
            break
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_run_killed_mid_training_resumes_to_the_same_metrics(reverse_data, tmp_path):
    data = reverse_data(train_groups=64)
    args = ["train", "tiny", f"data_paths=[{data}]", "epochs=30", "eval_interval=10", "checkpoint_every_steps=5"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole = run_cli(*args, f"checkpoint_path={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    assert "step/s" in whole.stderr and "loss=" in whole.stderr  # the progress bar
    assert "training speed: " in whole.stdout and "steps of this process after its first 10" in whole.stdout

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "trm_fast.cli.main", *args, f"checkpoint_path={run_dir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tempfile.gettempdir())  # not the repository root: see _trainutil.run_cli
    _kill_when(proc, run_dir, min_rows=13)
    logged = len(_rows(run_dir / "metrics.csv")) - 1
    assert 12 <= logged < 240  # killed mid-training, after a checkpoint, with steps past it to redo
    resumed = run_cli(*args, f"checkpoint_path={run_dir}", "--resume")
    assert resumed.returncode == 0, resumed.stderr

    assert _rows(run_dir / "metrics.csv") == _rows(tmp_path / "whole" / "metrics.csv")
    assert _rows(run_dir / "eval_metrics.csv") == _rows(tmp_path / "whole" / "eval_metrics.csv")
    final_a = torch.load(run_dir / "step_120.pt", weights_only=True)
    final_b = torch.load(tmp_path / "whole" / "step_120.pt", weights_only=True)
    for key in ("model", "ema"):
        assert all(torch.equal(final_a[key][k], final_b[key][k]) for k in final_b[key])


def test_fine_tuning_starts_from_an_official_checkpoint(reverse_data, tmp_path):
    data = reverse_data()
    arch = load_config("tiny").arch
    source = trm_fast.TRM(dict({k: v for k, v in arch.items() if k not in ("name", "loss")}, batch_size=16,
                               seq_len=8, vocab_size=6, num_puzzle_identifiers=5))
    torch.nn.init.normal_(source.inner.puzzle_emb.weights)
    path = tmp_path / "step_100"
    torch.save({"_orig_mod.model." + k: v for k, v in source.state_dict().items()}, path)
    run = Run(load_config("tiny", tiny_overrides(data, tmp_path / "run", f"load_checkpoint={path}")))
    try:
        got = run.model.state_dict()
        assert torch.equal(got["inner.lm_head.weight"], source.state_dict()["inner.lm_head.weight"])
        mean_row = source.inner.puzzle_emb.weights.mean(0)
        assert torch.allclose(got["inner.puzzle_emb.weights"], mean_row.expand(81, -1))  # 5 rows there, 81 here
        assert torch.equal(run.ema.shadow["inner.lm_head.weight"], got["inner.lm_head.weight"])
    finally:
        run.log.close()


def test_bad_training_inputs_fail_early_and_say_what(reverse_data, tmp_path):
    data = reverse_data()

    def run(*extra, resume=None):
        return train(load_config("tiny", tiny_overrides(data, tmp_path / "run", *extra)), resume=resume)

    with pytest.raises(FileNotFoundError, match=r"dataset directory not found: .*nope"):
        run(f"data_paths=[{tmp_path / 'nope'}]")
    with pytest.raises(FileNotFoundError, match=r"--resume: no checkpoint \(step_N.pt\) in the run directory"):
        run(resume="latest")
    with pytest.raises(ValueError, match=r"global_batch_size \(16\) must be a multiple|no training step"):
        run("global_batch_size=4096")
    run("epochs=2", "eval_interval=null")
    with pytest.raises(FileExistsError, match="already holds checkpoints .* pass --resume"):
        run("epochs=2", "eval_interval=null")
    with pytest.raises(ValueError, match=r"--resume: config key 'global_batch_size' differs from the checkpoint"):
        run("epochs=2", "eval_interval=null", "global_batch_size=8", resume="latest")
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*gone.pt"):
        run("epochs=2", "eval_interval=null", resume=str(tmp_path / "gone.pt"))
    torch.save({"inner.x": torch.zeros(1)}, tmp_path / "official.pt")
    with pytest.raises(ValueError, match=r"official.pt is not a trm_fast training checkpoint"):
        run("epochs=2", "eval_interval=null", resume=str(tmp_path / "official.pt"))
    with pytest.raises(FileNotFoundError, match="checkpoint file not found: .*missing.pt"):
        run("checkpoint_path=" + str(tmp_path / "other"), f"load_checkpoint={tmp_path / 'missing.pt'}")

    proc = run_cli("train", "tiny", f"data_paths=[{data}]", "lrr=1")
    assert proc.returncode == 2 and "unknown config key 'lrr' (did you mean 'lr'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("train", "--resume-from", tmp_path / "gone.pt", "tiny", f"data_paths=[{data}]",
                   f"checkpoint_path={tmp_path / 'run'}")
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr


def _losses_by(data, run_dir, key, values):
    """{value: the LM loss of each step} of a 2-epoch tiny run per value of config key `key`."""
    losses = {}
    for value in values:
        out = run_dir / f"{key}_{value}"
        train(load_config("tiny", tiny_overrides(data, out, "epochs=2", "eval_interval=null",
                                                 f"{key}={str(value).lower()}")))
        losses[value] = [float(r[5]) for r in _rows(out / "metrics.csv")[1:]]
    return losses


def test_a_compiled_training_step_trains_like_the_eager_one(reverse_data, tmp_path):
    # On a GPU the trainer compiles its step by default; here it is asked for, to check it changes nothing.
    losses = _losses_by(reverse_data(train_groups=16), tmp_path, "compile", (False, True))
    assert len(losses[True]) == 2 and losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_recompute_trains_like_storing_everything(reverse_data, tmp_path):
    # arch.recompute=mlp from the command line, as a user types it
    losses = _losses_by(reverse_data(train_groups=16), tmp_path, "arch.recompute", (False, True, "mlp"))
    assert len(losses[True]) == 2 and losses[True] == pytest.approx(losses[False], rel=1e-6)
    assert losses["mlp"] == pytest.approx(losses[False], rel=1e-6)


def test_sigterm_stops_after_a_step_with_a_checkpoint_and_resume_loses_nothing(reverse_data, tmp_path):
    data = reverse_data(train_groups=64)
    args = ["train", "tiny", f"data_paths=[{data}]", "epochs=30", "eval_interval=10"]
    whole = run_cli(*args, f"checkpoint_path={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr

    run_dir = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "trm_fast.cli.main", *args, f"checkpoint_path={run_dir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=tempfile.gettempdir())
    deadline = time.time() + 120
    while not ((run_dir / "metrics.csv").exists() and (run_dir / "metrics.csv").read_text().count("\n") > 8):
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    stopped_at = int(_rows(run_dir / "metrics.csv")[-1][0])
    assert f"interrupted: SIGTERM after step {stopped_at}, checkpoint saved" in err
    assert (run_dir / f"step_{stopped_at}.pt").exists() and (run_dir / "metrics.png").exists()
    resumed = run_cli(*args, f"checkpoint_path={run_dir}", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _rows(run_dir / "metrics.csv") == _rows(tmp_path / "whole" / "metrics.csv")


def test_profile_steps_writes_a_trace_and_a_table(reverse_data, tmp_path):
    data, run_dir = reverse_data(train_groups=64), tmp_path / "run"
    proc = run_cli("train", "tiny", *tiny_overrides(data, run_dir, "epochs=4", "eval_interval=null"),  # 16 steps
                   "--profile-steps", "3")
    assert proc.returncode == 0, proc.stderr
    summary = (run_dir / "profile" / "steps.txt").read_text().splitlines()[0]
    assert summary.startswith("3 steps profiled:") and "ms wall per step" in summary
    assert (run_dir / "profile" / "trace.json.gz").stat().st_size > 100
    assert "profile: 3 steps profiled" in proc.stdout + proc.stderr
    bad = run_cli("train", "tiny", *tiny_overrides(data, tmp_path / "bad"), "--profile-steps", "-1")
    assert bad.returncode == 2 and "--profile-steps: must be an integer >= 0, got -1" in bad.stderr
