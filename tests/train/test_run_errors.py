"""`trm-fast train` and `trm-fast eval` failures: one line, found before the run starts where they can be,
exit status 2 for bad input and 1 for a full disk, and no run directory left behind by a run that never
took a step."""

import os

import pytest
import torch
import trm_fast
import yaml
from helpers import error_line
from trm_fast.cli.main import main
from trm_fast.train import load_config, train
from trm_fast.train.loop import Run

from _trainutil import run_cli, tiny_overrides, write_split


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fused backend may run here")
def test_the_fused_backend_on_a_cpu_is_refused_before_the_run(reverse_data, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "fused"
    assert main(["train", "tiny", *tiny_overrides(reverse_data(), run_dir), "arch.backend=fused"]) == 2
    line = error_line(capsys.readouterr().err, "train")
    assert "backend 'fused' (config field 'backend') cannot run: its kernels need a CUDA device" in line
    assert line.endswith("choose 'auto' or 'reference'") and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_run_directory_is_refused_before_the_run(reverse_data, tmp_path, where, capsys):
    (tmp_path / "file").write_text("not a directory")
    run_dir = tmp_path / "file" / "run" if where == "file" else "/proc/trm-fast-run"
    assert main(["train", "tiny", *tiny_overrides(reverse_data(), run_dir)]) == 2
    assert f"checkpoint_path {run_dir}: " in error_line(capsys.readouterr().err, "train")


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(reverse_data, tmp_path):
    data, run_dir = reverse_data(), tmp_path / "run"
    train(load_config("tiny", tiny_overrides(data, run_dir, "epochs=2")))
    saved = (run_dir / "step_4.pt").read_bytes()
    assert len(saved) > 1_000_000  # the limit below lets the logs through, not a checkpoint
    proc = run_cli("train", "tiny", *tiny_overrides(data, run_dir, "epochs=4"), "--resume", file_size_limit=1_000_000)
    assert proc.returncode == 1, proc.stderr
    assert error_line(proc.stderr, "train") == (
        f"trm-fast train: error: cannot write {run_dir / 'step_8.pt'}: the file is larger than the file-size limit "
        "(ulimit -f): raise it or write elsewhere")
    assert (run_dir / "step_4.pt").read_bytes() == saved
    assert not [p for p in os.listdir(run_dir) if ".tmp" in p or p == "step_8.pt"]


def test_the_run_directory_comes_first_and_the_bars_suit_a_log_file(reverse_data, tmp_path):
    # 4 epochs of 30 groups in batches of 16: the official estimate is 7 steps, but each 2-epoch iteration
    # drops its last 12 groups, so the run takes 6
    run_dir = tmp_path / "run"
    proc = run_cli("train", "tiny", *tiny_overrides(reverse_data(train_groups=30), run_dir, "epochs=4",
                                                    "eval_interval=2"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"run directory: {run_dir}"
    assert "100%" in proc.stderr.split("\r")[-1] and " 6/6 " in proc.stderr.split("\r")[-1]
    assert "\x1b[" not in proc.stderr  # the nested evaluation bar moves the cursor only on a terminal


@pytest.mark.parametrize("fail_at_step, left", [(1, False), (2, True)])
def test_a_run_that_fails_before_its_first_step_leaves_no_directory(reverse_data, tmp_path, monkeypatch,
                                                                    fail_at_step, left):
    step = Run.train_step

    def failing(self, batch):
        if self.step + 1 == fail_at_step:
            raise RuntimeError("a bug")
        return step(self, batch)
    monkeypatch.setattr(Run, "train_step", failing)
    run_dir = tmp_path / "runs" / "project" / "run"
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
        train(load_config("tiny", tiny_overrides(reverse_data(), run_dir)))
    assert (tmp_path / "runs").exists() == left  # after a step its logs stay
    assert not left or (run_dir / "metrics.csv").read_text().count("\n") == 2


def test_resuming_with_another_arch_names_the_keys_that_differ(reverse_data, tmp_path):
    data, run_dir = reverse_data(), tmp_path / "run"
    train(load_config("tiny", tiny_overrides(data, run_dir, "epochs=2", "eval_interval=null")))
    proc = run_cli("train", "tiny", *tiny_overrides(data, run_dir, "epochs=2", "eval_interval=null",
                                                    "arch.L_cycles=3", "arch.hidden_size=128"), "--resume")
    assert proc.returncode == 2
    assert error_line(proc.stderr, "train").endswith(
        f"config key 'arch' differs from the checkpoint {run_dir / 'step_4.pt'}: arch.L_cycles 2 there, 3 now; "
        "arch.hidden_size 64 there, 128 now")


def test_a_wider_checkpoint_than_the_config_says_so(tmp_path):
    arch = dict(name="recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                loss=dict(name="losses@ACTLossHead", loss_type="stablemax_cross_entropy"),
                halt_exploration_prob=0.1, halt_max_steps=2, H_cycles=1, L_cycles=1, H_layers=0, L_layers=1,
                hidden_size=32, num_heads=2, expansion=2, puzzle_emb_ndim=32, pos_encodings="rope",
                forward_dtype="float32")
    model = trm_fast.TRM(dict({k: v for k, v in arch.items() if k not in ("name", "loss")}, batch_size=1, seq_len=4,
                              vocab_size=6, num_puzzle_identifiers=2))
    torch.save({"_orig_mod.model." + k: v for k, v in model.state_dict().items()}, tmp_path / "step_1")
    (tmp_path / "small.yaml").write_text(yaml.safe_dump({"arch": dict(arch, hidden_size=16, puzzle_emb_ndim=16)}))
    write_split(tmp_path / "data" / "test", [[1, 2, 3, 4]], [[1, 2, 3, 4]], [1], [1], [1], vocab_size=6, num_ids=2)
    proc = run_cli("eval", tmp_path / "step_1", "--data", tmp_path / "data", "--config", tmp_path / "small.yaml",
                   "--device", "cpu")
    assert proc.returncode == 2
    line = error_line(proc.stderr, "eval")
    assert "checkpoint does not match TRM: the checkpoint has hidden_size 32, the model 16: build the model from " \
           "the checkpoint's own arch config | mis-shaped keys: " in line and " more" in line
    assert "num_puzzle_identifiers" not in line and "reset_puzzle_emb" not in line


def test_running_out_of_device_memory_says_what_needs_less(reverse_data, tmp_path, monkeypatch, capsys):
    step = Run.train_step

    def failing(self, batch):
        if self.step + 1 == 3:
            self.step += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore lines")
        return step(self, batch)
    monkeypatch.setattr(Run, "train_step", failing)
    run_dir = tmp_path / "run"
    assert main(["train", "tiny", *tiny_overrides(reverse_data(), run_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("trm-fast train: error: out of device memory in training step 3: CUDA out of memory. Tried to "
                   "allocate 2.00 GiB. To need less: arch.recompute=mlp (on a GPU, the gradient cycle's channel "
                   "MLPs recomputed: a few percent more time; --resume takes it); arch.recompute=true (the gradient "
                   "cycle's activations "
                   "recomputed: about a quarter of the memory; --resume takes it); a smaller global_batch_size "
                   "(now 16; a new run); no checkpoint was written yet")
    assert (run_dir / "metrics.csv").read_text().count("\n") == 3  # the header and the two steps done


def test_an_evaluation_out_of_device_memory_names_the_batch_size(monkeypatch, capsys, tmp_path):
    import trm_fast.evaluate

    def failing(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory.")
    monkeypatch.setattr(trm_fast.evaluate, "evaluate_checkpoint", failing)
    (tmp_path / "data").mkdir()
    code = main(["eval", str(tmp_path / "step_1.pt"), "--data", str(tmp_path / "data"), "--device", "cpu"])
    assert code == 1
    assert capsys.readouterr().err.strip().endswith(
        "out of device memory evaluating " + str(tmp_path / "step_1.pt") + ": CUDA out of memory. To need less: "
        "a smaller --batch-size (now 256)")


def test_out_of_memory_in_an_evaluation_or_behind_another_error_is_named(reverse_data, tmp_path, monkeypatch,
                                                                         capsys):
    def failing(self):
        try:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        except torch.OutOfMemoryError:
            raise RuntimeError("graph capture failed")  # what a failed CUDA-graph capture raises
    monkeypatch.setattr(Run, "_evaluate", failing)
    assert main(["train", "tiny", *tiny_overrides(reverse_data(), tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("trm-fast train: error: out of device memory in the evaluation after step ")
    assert "a smaller global_batch_size, which is also the evaluation's rows (now 16; a new run)" in err
    assert "recompute" not in err


def test_a_run_resumes_with_recompute_turned_on(reverse_data, tmp_path):
    data, run_dir = reverse_data(), tmp_path / "run"
    args = ["epochs=4", "eval_interval=2", "checkpoint_every_eval=true"]
    train(load_config("tiny", tiny_overrides(data, run_dir, *args)))
    os.remove(run_dir / "step_8.pt")  # as if it had run out of memory after step 4
    train(load_config("tiny", tiny_overrides(data, run_dir, *args, "arch.recompute=true")), resume="latest")
    assert sorted(p.name for p in run_dir.glob("step_*.pt")) == ["step_4.pt", "step_8.pt"]
    proc = run_cli("train", "tiny", *tiny_overrides(data, run_dir, *args, "cuda_graph=true", "arch.recompute=true"),
                   "--resume")
    assert proc.returncode == 2
    assert "config key 'cuda_graph' does not take arch.recompute where each reasoning-module call" in proc.stderr
