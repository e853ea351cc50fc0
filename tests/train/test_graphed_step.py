"""Config key cuda_graph: the whole training step replayed from one CUDA graph (train/graphed_step.py)."""

import csv

import pytest
import torch
from trm_fast.train import load_config, train
from trm_fast.train.logger import read_train_rows

from _trainutil import run_cli, tiny_overrides


def _losses(run_dir):
    return [float(r["lm_loss"]) for r in read_train_rows(run_dir)]


def test_cuda_graph_on_a_cpu_is_refused_before_any_work(reverse_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    run_dir = tmp_path / "run"
    proc = run_cli("train", "tiny", *tiny_overrides(reverse_data(), run_dir), "cuda_graph=true")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "config key 'cuda_graph' needs a CUDA device; this run is on cpu" in proc.stderr
    assert not run_dir.exists()


def _evals(run_dir):
    with open(run_dir / "eval_metrics.csv", newline="") as f:
        return [(r["step"], r["metric"], float(r["value"])) for r in csv.DictReader(f)]


@pytest.mark.gpu
@pytest.mark.parametrize("compiled, ema", [(False, False), (True, True)], ids=["eager", "compiled-ema"])
def test_a_graphed_run_trains_and_evaluates_like_the_eager_steps(reverse_data, tmp_path, compiled, ema):
    # no exploration: its random numbers come in another order from a replayed graph
    data, losses, evals = reverse_data(train_groups=64), {}, {}
    for graphed in (False, True):
        run_dir = tmp_path / f"graphed_{graphed}"
        train(load_config("tiny", tiny_overrides(
            data, run_dir, "epochs=8", f"ema={str(ema).lower()}", "arch.halt_exploration_prob=0.0",
            f"compile={str(compiled).lower()}", f"cuda_graph={str(graphed).lower()}")))  # evaluates every 2 epochs
        losses[graphed], evals[graphed] = _losses(run_dir), _evals(run_dir)
    assert len(losses[True]) == 32 and losses[True] == pytest.approx(losses[False], rel=1e-3, abs=1e-4)
    # the evaluations read the weights the replays wrote (no version counter tells the engine)
    assert [e[:2] for e in evals[True]] == [e[:2] for e in evals[False]] and len(evals[True]) > 4
    assert [e[2] for e in evals[True]] == pytest.approx([e[2] for e in evals[False]], rel=1e-3, abs=1e-3)
