"""Two processes (torchrun, gloo on the CPU) train the same model as one process with the same global
batch: each takes half of every batch, gradients are summed across ranks, the puzzle embedding's
(id, gradient) pairs are all-gathered. Exploration is off, since its random draws are per rank."""

import csv
import os
import tempfile
import subprocess
import sys

import torch


def _train(data, run_dir, processes):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    cmd = (launcher if processes > 1 else [sys.executable]) + [
        "-m", "trm_fast.cli.main", "train", "tiny", f"data_paths=[{data}]", f"checkpoint_path={run_dir}",
        "epochs=4", "eval_interval=2", "arch.halt_exploration_prob=0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          cwd=tempfile.gettempdir())  # not the repository root: see _trainutil.run_cli
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # rank 0 reports
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return torch.load(os.path.join(run_dir, "step_8.pt"), weights_only=True), rows


def test_two_processes_train_like_one(reverse_data, tmp_path):
    data = reverse_data()
    one, rows_one = _train(data, tmp_path / "one", 1)
    two, rows_two = _train(data, tmp_path / "two", 2)
    assert two["world_size"] == 2 and len(two["carry"]) == 2 and two["carry"][1]["z_H"].shape[0] == 8
    for key in ("model", "ema"):
        for name, value in one[key].items():
            torch.testing.assert_close(two[key][name], value, rtol=1e-5, atol=1e-6, msg=f"{key} {name}")
    assert one["model"]["inner.puzzle_emb.weights"].abs().sum() > 0  # the sparse embedding was trained too
    assert len(rows_one) == len(rows_two) == 8
    for a, b in zip(rows_one, rows_two):
        assert a["count"] == b["count"] and abs(float(a["lm_loss"]) - float(b["lm_loss"])) < 1e-5


def _run(data, run_dir, processes, *extra):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    cmd = (launcher if processes > 1 else [sys.executable]) + [
        "-m", "trm_fast.cli.main", "train", "tiny", f"data_paths=[{data}]", f"checkpoint_path={run_dir}",
        "epochs=4", "eval_interval=2", "arch.halt_exploration_prob=0", "checkpoint_every_steps=4", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        return proc, list(csv.DictReader(f)), torch.load(os.path.join(run_dir, "step_8.pt"), weights_only=True)


def test_a_checkpoint_resumes_on_another_number_of_processes(reverse_data, tmp_path):
    # the sampler's position is global and rank r holds rows [r B / W, (r + 1) B / W): the carries of two
    # processes, stacked, are one process's; without exploration the resumed run is the same run
    data = reverse_data()
    for before, after in ((2, 1), (1, 2)):
        _, whole, end = _run(data, tmp_path / f"whole{before}", before)
        proc, resumed, resumed_end = _run(data, tmp_path / f"resumed{before}{after}", after, "--resume-from",
                                          str(tmp_path / f"whole{before}" / "step_4.pt"))
        assert f"was written by {before} processes, this run has {after}" in proc.stderr
        assert [r["step"] for r in resumed] == ["5", "6", "7", "8"]
        for a, b in zip(whole[4:], resumed):
            assert a["count"] == b["count"] and abs(float(a["lm_loss"]) - float(b["lm_loss"])) < 1e-5
        assert resumed_end["world_size"] == after and len(resumed_end["carry"]) == after
        for name, value in end["model"].items():
            torch.testing.assert_close(resumed_end["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
