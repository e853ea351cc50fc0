"""The run logger's training speed: wall time between steps after the warm-up, with the time taken by an
evaluation or a checkpoint write left out."""

import pytest
from trm_fast.train import logger as logger_module
from trm_fast.train.logger import WARMUP_STEPS, RunLogger

METRICS = {"count": 3, "lm_loss": 1.0, "accuracy": 0.5, "exact_accuracy": 0.0}


def test_evaluations_and_checkpoints_are_not_timed_as_steps(tmp_path, monkeypatch, capsys):
    clock = [0.0]
    monkeypatch.setattr(logger_module.time, "perf_counter", lambda: clock[0])
    log = RunLogger(str(tmp_path), total_steps=100, start_step=0)

    def steps(first, count, seconds_each):
        for step in range(first, first + count):
            clock[0] += seconds_each
            log.step(step, METRICS)

    steps(1, WARMUP_STEPS, 5.0)  # compiling: never timed
    steps(WARMUP_STEPS + 1, 4, 0.1)
    clock[0] += 30.0  # a checkpoint written
    log.untimed()
    steps(WARMUP_STEPS + 5, 3, 0.1)  # the first after it only restarts the clock
    clock[0] += 60.0  # an evaluation
    log.evaluation(WARMUP_STEPS + 7, {"accuracy": 0.5})
    steps(WARMUP_STEPS + 8, 2, 0.1)
    assert log.timed_steps == 4 + 2 + 1
    assert log.train_seconds == pytest.approx(0.7)
    log.close(peak_gib=1.5)
    out = capsys.readouterr().out
    assert "training speed: 10.00 steps/s (7 steps" in out and "checkpoints excluded" in out
